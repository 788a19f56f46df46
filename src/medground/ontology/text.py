"""Text normalisation for matching prompts against ontology terms.

Everything here is deterministic and dependency-free. The same :func:`normalize` is applied to the
ontology's names/synonyms when the index is built and to the user's prompt when it is resolved, so
both sides meet in one canonical form: lower case, ASCII, punctuation removed, American spelling,
singular nouns, no filler words ("segment the ...", "mask", "in this image").
"""
from __future__ import annotations

import re
import unicodedata

# --------------------------------------------------------------------------- spelling (UK -> US)
# Whole-token replacements; applied after lower-casing, before singularisation.
_SPELLING = {
    "tumour": "tumor", "tumours": "tumors", "tumoural": "tumoral",
    "oesophagus": "esophagus", "oesophagi": "esophagi", "oesophageal": "esophageal",
    "oedema": "edema", "oedematous": "edematous",
    "haemorrhage": "hemorrhage", "haemorrhages": "hemorrhages", "haemorrhagic": "hemorrhagic",
    "haematoma": "hematoma", "haematomas": "hematomas", "haemangioma": "hemangioma",
    "haemothorax": "hemothorax", "haemopericardium": "hemopericardium", "haemoperitoneum": "hemoperitoneum",
    "haemoptysis": "hemoptysis", "haemodynamic": "hemodynamic",
    "anaemia": "anemia", "leukaemia": "leukemia", "ischaemia": "ischemia", "ischaemic": "ischemic",
    "paediatric": "pediatric", "foetal": "fetal", "foetus": "fetus", "oestrogen": "estrogen",
    "caecum": "cecum", "caecal": "cecal", "faeces": "feces", "faecal": "fecal",
    "centre": "center", "centres": "centers", "fibre": "fiber", "fibres": "fibers",
    "diarrhoea": "diarrhea", "dyspnoea": "dyspnea", "apnoea": "apnea",
    "gynaecological": "gynecological", "orthopaedic": "orthopedic", "anaesthesia": "anesthesia",
    "grey": "gray", "colour": "color", "haemosiderin": "hemosiderin", "aetiology": "etiology",
    "oesophagogastric": "esophagogastric", "tumorous": "tumorous",
    "localised": "localized", "generalised": "generalized", "calcified": "calcified",
    "x-ray": "xray", "xrays": "xray", "x-rays": "xray",
}

_PREFIX_RULES = (("haem", "hem"), ("oesoph", "esoph"), ("oedem", "edem"), ("paed", "ped"), ("caec", "cec"))

# Words ending in "s" (or looking plural) that are singular.
_SINGULAR_S = {
    "pancreas", "atlas", "vas", "pelvis", "thorax", "os", "iris", "lens", "pons", "ductus",
    "corpus", "globus", "diabetes", "covid", "sars", "mers", "abdominis", "testis", "mellitus",
    "bronchiectasis", "atelectasis", "metastasis", "stenosis", "thrombosis", "sclerosis", "fibrosis",
    "necrosis", "pneumatosis", "ascites", "arthritis", "pneumonitis", "diverticulitis", "appendicitis",
    "nephrolithiasis", "cholelithiasis", "lymphadenitis", "hepatitis", "tuberculosis", "series",
    "species", "biceps", "triceps", "quadriceps", "axis", "apex", "cortex", "vertex", "vermis",
    "crus", "meninges", "gas", "mass", "abscess", "process", "plexus", "sinus", "thalamus",
    "hypothalamus", "hippocampus", "esophagus", "uterus", "humerus", "nucleus", "gyrus", "sulcus",
    "bronchus", "fundus", "isthmus", "ramus", "sacrus", "tectus", "locus", "calculus", "embolus",
    "thymus", "villus", "uncus", "cuneus", "precuneus", "sinus", "ileus", "fornix", "rectus",
    "psoas", "lateralis", "medialis", "longus", "brevis", "magnus", "minimus", "medius", "maximus",
    "dorsi", "ruber", "bilateral", "bulbus", "glans", "pubis", "coccyx", "larynx", "pharynx",
    "ganglion", "anus", "its", "this", "has", "was", "is", "us", "as", "yes", "gluteus",
}

# Latin "-i" plurals (nuclei -> nucleus); only for these words.
_LATIN_I = {
    "nuclei": "nucleus", "bronchi": "bronchus", "gyri": "gyrus", "sulci": "sulcus", "thalami": "thalamus",
    "hippocampi": "hippocampus", "calculi": "calculus", "emboli": "embolus", "fundi": "fundus",
    "villi": "villus", "humeri": "humerus", "esophagi": "esophagus", "uteri": "uterus", "loci": "locus",
    "foci": "focus", "radii": "radius", "menisci": "meniscus", "glutei": "gluteus", "rami": "ramus",
}
_LATIN_A = {
    "vertebrae": "vertebra", "pleurae": "pleura", "tibiae": "tibia", "fibulae": "fibula",
    "scapulae": "scapula", "claviculae": "clavicula", "costae": "costa", "ulnae": "ulna",
    "patellae": "patella", "fossae": "fossa", "tracheae": "trachea", "aortae": "aorta",
    "venae": "vena", "arteriae": "arteria", "laminae": "lamina", "areae": "area", "coronae": "corona",
    "cavae": "cava", "bullae": "bulla",
}
_IRREGULAR = {
    "cervices": "cervix", "apices": "apex", "cortices": "cortex", "vertices": "vertex", "indices": "index",
    "metastases": "metastasis", "diagnoses": "diagnosis", "stenoses": "stenosis", "anastomoses": "anastomosis",
    "testes": "testis", "pelves": "pelvis", "calyces": "calyx", "larynges": "larynx", "phalanges": "phalanx",
    "ganglia": "ganglion", "diverticula": "diverticulum", "atria": "atrium", "septa": "septum",
    "ova": "ovum", "data": "data", "criteria": "criterion", "bones": "bone",
    "lesiones": "lesion",
}


def _singular(tok: str) -> str:
    if len(tok) <= 3 or not tok.isalpha():
        return tok
    if tok in _SINGULAR_S:
        return tok
    if tok in _IRREGULAR:
        return _IRREGULAR[tok]
    if tok in _LATIN_A:
        return _LATIN_A[tok]
    if tok in _LATIN_I:
        return _LATIN_I[tok]
    if tok.endswith("ies") and len(tok) > 4:
        return tok[:-3] + "y"
    if tok.endswith("sses") or tok.endswith("uses") or tok.endswith("xes") or tok.endswith("ches") \
            or tok.endswith("shes"):
        return tok[:-2]
    if tok.endswith("s") and not tok.endswith(("ss", "us", "is")):
        return tok[:-1]
    return tok


def us_spelling(tok: str) -> str:
    tok = _SPELLING.get(tok, tok)
    for uk, us in _PREFIX_RULES:
        if tok.startswith(uk):
            return us + tok[len(uk):]
    return tok


# --------------------------------------------------------------------------- filler words
# Leading phrases of instructions ("segment the liver", "please show me where the spleen is").
_LEADING = [
    "please", "can you", "could you", "would you", "kindly", "i want", "i need", "i would like",
    "segment", "segmentation of", "segmentation", "segmenting", "find", "show me", "show", "highlight",
    "outline", "delineate", "contour", "detect", "locate", "localize", "localise", "identify", "mark",
    "mask of", "mask", "draw", "label", "annotate", "extract", "isolate", "select", "give me", "get",
    "where is", "where are", "what is", "there is", "there are", "to", "me", "all", "every", "any",
]
_TRAILING = [
    "mask", "masks", "segmentation", "segmentations", "contour", "contours", "outline", "please",
    "region of interest", "roi", "structure", "in this image", "in the image", "on the image",
    "in this scan", "in the scan", "on this scan", "on the scan", "in this ct", "on this ct", "on the ct",
    "in the ct", "in this mri", "in the mri", "on the mri", "on the xray", "on this xray", "in the xray",
    "in this xray", "here", "is",
]
STOP_TOKENS = {"the", "a", "an", "this", "these", "those", "its", "his", "her", "their", "patient", "patients"}
# Tokens ignored when comparing bags of words ("cyst of the left kidney" == "left kidney cyst").
BAG_IGNORE = {"of", "and", "in", "with", "the", "on", "at", "for", "to", "from", "both"}

_PUNCT = re.compile(r"[^\w\s.]")  # keep word chars and dots (dots only survive between digits)
_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
_SPACES = re.compile(r"\s+")


_LIGATURES = str.maketrans({"Œ": "Oe", "œ": "oe", "Æ": "Ae", "æ": "ae", "ß": "ss", "ø": "o", "Ø": "O"})


def ascii_fold(text: str) -> str:
    t = str(text).translate(_LIGATURES)
    return unicodedata.normalize("NFKD", t).encode("ascii", "ignore").decode("ascii")


def basic_clean(text: str) -> str:
    """Lower case, ASCII, punctuation to spaces (digits' decimal dots kept), single spaces."""
    t = ascii_fold(text).lower()
    t = t.replace("'s ", " ").replace("'s", "").replace("_", " ").replace("x-ray", "xray")
    t = _PUNCT.sub(" ", t)
    t = _DOT.sub(" ", t)
    return _SPACES.sub(" ", t).strip()


_LEAD_RE = re.compile(r"^(?:(?:" + "|".join(sorted(map(re.escape, _LEADING), key=len, reverse=True)) + r")\s+)+")
_TRAIL_RE = re.compile(r"(?:\s+(?:" + "|".join(sorted(map(re.escape, _TRAILING), key=len, reverse=True)) + r"))+$")


def _strip_phrases(t: str) -> str:
    out = _TRAIL_RE.sub("", _LEAD_RE.sub("", t))
    return out if out.strip() else t


def tokens(text: str, strip_filler: bool = True) -> list[str]:
    """Canonical tokens of ``text`` (see module docstring)."""
    t = basic_clean(text)
    if strip_filler:
        t = _strip_phrases(t)
    out = []
    for tok in t.split():
        if strip_filler and tok in STOP_TOKENS:
            continue
        tok = us_spelling(tok)
        tok = _singular(tok)
        out.append(tok)
    if not out and t:  # never strip a prompt to nothing ("mask" alone stays "mask")
        out = [_singular(us_spelling(x)) for x in basic_clean(text).split()]
    return out


def normalize(text: str, strip_filler: bool = True) -> str:
    """Canonical string form used for exact matching."""
    return " ".join(tokens(text, strip_filler=strip_filler))


def bag_key(norm: str) -> str:
    """Order-insensitive key: sorted tokens without linking words."""
    toks = sorted(t for t in norm.split() if t not in BAG_IGNORE)
    return " ".join(toks)


# --------------------------------------------------------------------------- fuzzy matching
def levenshtein(a: str, b: str, max_dist: int | None = None) -> int:
    """Edit distance (insert/delete/substitute = 1, adjacent transposition = 1).

    With ``max_dist`` the computation stops early and returns ``max_dist + 1`` once the distance
    is known to exceed it.
    """
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if max_dist is not None and abs(la - lb) > max_dist:
        return max_dist + 1
    if la == 0:
        return lb
    if lb == 0:
        return la
    prev2 = None
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        ca = a[i - 1]
        row_min = i
        for j in range(1, lb + 1):
            cost = 0 if ca == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            if v < row_min:
                row_min = v
        if max_dist is not None and row_min > max_dist:
            return max_dist + 1
        prev2, prev = prev, cur
    return prev[lb]


def similarity(a: str, b: str) -> float:
    """1 - normalised edit distance, in [0, 1]."""
    if not a and not b:
        return 1.0
    d = levenshtein(a, b)
    return 1.0 - d / max(len(a), len(b))


def allowed_typos(n: int) -> int:
    """How many edits a word of ``n`` characters may contain and still count as a match."""
    if n <= 3:
        return 0
    if n <= 5:
        return 1
    if n <= 10:
        return 2
    return 3


def slug(prompt: str, max_len: int = 100) -> str:
    """File-name-safe form of a prompt: lower case, spaces to '-', unsafe characters dropped.

    >>> slug("Left Kidney")
    'left-kidney'
    >>> slug("  Liver / tumour: segment?  ")
    'liver-tumour-segment'
    """
    t = ascii_fold(prompt).lower()
    t = re.sub(r"[\s/\\|:,;]+", "-", t)
    t = re.sub(r"[^a-z0-9._+-]", "", t)
    t = re.sub(r"-{2,}", "-", t)
    t = re.sub(r"\.{2,}", ".", t)
    t = t.strip("-._")
    t = t[:max_len].rstrip("-._")
    return t or "prompt"
