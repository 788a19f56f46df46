"""Question and answer text: VQA-RAD answer normalisation, closed/open and option parsing, the rule
part of the question-type router, and the label words that tie answers to the image heads."""
from __future__ import annotations

import re

# VQA-RAD question_type codes -> the router's names
TYPE_NAMES = {
    "MODALITY": "modality", "PLANE": "plane", "ORGAN": "organ", "PRES": "presence", "POS": "position",
    "SIZE": "size", "COUNT": "count", "ABN": "abnormality", "ATTRIB": "attribute", "COLOR": "color",
    "OTHER": "other",
}
TYPES = list(TYPE_NAMES)
_TYPE_FIX = {"ATRIB": "ATTRIB", "PRSE": "PRES", "OTHER": "OTHER", "Other": "OTHER"}

_PUNCT = re.compile(r"[^\w\s\-/+%<>=]")


def normalize_answer(a) -> str:
    """VQA-RAD scoring form: lower-case, punctuation stripped, whitespace collapsed."""
    s = str(a).lower().strip()
    s = _PUNCT.sub(" ", s)
    return " ".join(s.split())


def normalize_question(q: str) -> str:
    s = " ".join(str(q).lower().replace("?", " ? ").split())
    return re.sub(r"\bis/are\b", "is", re.sub(r"^doe\b", "does", s))


def primary_type(code: str) -> str:
    """'PRES, POS' -> 'PRES'; typos fixed."""
    c = str(code).split(",")[0].strip()
    c = _TYPE_FIX.get(c, c.upper())
    return c if c in TYPE_NAMES else "OTHER"


_AUX = ("is", "are", "was", "were", "does", "do", "did", "can", "could", "has", "have", "had", "will", "would",
        "should", "may", "might", "isn't", "aren't", "doesn't", "don't")
_WH = ("what", "which", "where", "how", "why", "who", "whom", "whose", "when", "name", "describe", "list")


def options(question: str) -> list[str]:
    """The alternatives of an 'X or Y' question ('is this an mri or a ct?' -> ['mri', 'ct'];
    'is the lesion on the patient's right or left side?' -> ['right', 'left'])."""
    q = normalize_answer(normalize_question(question).rstrip(" ?"))
    if " or " not in f" {q} " or re.match(r"^(is|are) there\b", q):  # 'is there X or Y?' is yes/no
        return []
    left, right = q.rsplit(" or ", 1)
    if "," in left:
        left = left.split(",")[-1]
    art = ("a", "an", "the", "in", "on", "of", "is", "this")
    rw = [w for w in right.split() if w not in art][:4]
    lw = left.split()
    if not rw or not lw:
        return []
    n = len(rw)
    if n > 1 and len(lw) >= n and lw[-n + 1:] == rw[1:]:
        opts = [" ".join(lw[-n:]), " ".join(rw)]  # 'hyper dense or hypo dense'
    elif n > 1:
        opts = [lw[-1], rw[0]]  # 'right or left side', 'left or right kidney'
    else:
        opts = [lw[-1], rw[0]]
    return [o for o in opts if o]


def is_closed(question: str) -> bool:
    """Yes/no or choice question by its form."""
    q = normalize_question(question)
    w = q.split()
    if not w:
        return False
    return w[0] in _AUX or (len(w) > 1 and w[0] == "this" and w[1] in ("is", "image")) or bool(options(question))


def is_yes_no(question: str) -> bool:
    q = normalize_question(question)
    w = q.split()
    return bool(w) and w[0] in _AUX and not options(question)


_RULES: list[tuple[str, str]] = [
    (r"\bhow many\b|\bnumber of\b|\bcount\b", "COUNT"),
    (r"\bplane\b|\baxial\b|\bcoronal\b|\bsagittal\b|\bsection\b|\b(pa|ap) (view|film|image|projection)\b"
     r"|\bview\b.*\b(taken|image)\b|\bprojection\b", "PLANE"),
    (r"\bmodality\b|\bkind of (image|scan)\b|\btype of (image|imaging|scan)\b|\bimaging (technique|method)\b"
     r"|\bwhat (imaging|type of imaging)\b|\bis this an? (mri|ct|x-?ray|ultrasound|radiograph)\b"
     r"|\bweighted\b|\bflair\b|\bt1\b|\bt2\b|\bcontrast\b", "MODALITY"),
    (r"\bwhat organ\b|\borgan system\b|\bwhich organ\b|\bwhat part of the body\b|\bbody part\b", "ORGAN"),
    (r"\bcolou?r\b|\bhyper.?(intense|dense|attenuat)|\bhypo.?(intense|dense|attenuat)|\bbright\b|\bdark\b",
     "COLOR"),
    (r"\bwhere\b|\bwhich side\b|\bwhat side\b|\blocat|\bleft or right\b|\bright or left\b|\bwhich lobe\b"
     r"|\bwhich (part|region|quadrant|hemisphere|lung)\b", "POS"),
    (r"\bsize\b|\benlarged\b|\bdilat|\blarge\b|\bsmall\b|\bhow big\b|\bmeasure|\bcm\b|\bmm\b|\bwide\b", "SIZE"),
    (r"\bnormal\b|\babnormal|\bpatholog|\bhealthy\b|\bwrong\b", "ABN"),
    (r"^(is|are) there\b|\bpresent\b|\bseen\b|\bvisible\b|\bevidence of\b|\bshow\b", "PRES"),
]


def rule_type(question: str) -> str | None:
    q = normalize_question(question)
    for pat, t in _RULES:
        if re.search(pat, q):
            return t
    return None


# label words: what an answer (or a closed question) says about the image heads
HEAD_WORDS: dict[str, dict[str, list[str]]] = {
    "modality": {
        "ct": [r"\bct\b", r"\bcat scan\b", r"computed tomograph", r"\bcta\b"],
        "mri": [r"\bmri?\b", r"\bmr\b", r"magnetic", r"\bflair\b", r"\bt1\b", r"\bt2\b", r"\bdwi\b", r"diffusion",
                r"weighted"],
        "x-ray": [r"\bx.?rays?\b", r"\bxrays?\b", r"radiograph", r"plain film", r"\bcxr\b", r"\bxr\b", r"\bfilm\b"],
    },
    "plane": {
        "axial": [r"\baxial\b", r"\btransverse\b", r"\btransaxial\b"],
        "coronal": [r"\bcoronal\b"],
        "sagittal": [r"\bsagittal\b"],
        "pa": [r"\bpa\b", r"posterior.?anterior", r"postero.?anterior", r"\bap\b", r"anterior.?posterior",
               r"\bfrontal\b"],
        "lateral": [r"\blateral (view|film|projection|radiograph)\b|^lateral$"],
    },
    "organ": {
        "head": [r"\bbrain\b", r"\bhead\b", r"\bskull\b", r"\bcerebr", r"\bneuro", r"\bcns\b",
                 r"\bnervous\b", r"\bventric"],
        "chest": [r"\bchest\b", r"\bcxr\b", r"\blungs?\b", r"\bthora", r"\bpulmonary\b", r"\bcardio", r"\bheart\b",
                  r"\brespiratory\b", r"\bpleura"],
        "abd": [r"\babdom", r"\bliver\b", r"\bkidney", r"\brenal\b", r"\bpelvi", r"\bbowel\b", r"\bgastro",
                r"\bgi\b", r"\bpancrea", r"\bspleen\b", r"\bcolon\b", r"\bgall", r"\burinary\b", r"\bbladder\b"],
    },
}


def head_labels(text: str, head: str) -> list[str]:
    """Which labels of ``head`` the text names ('ct with contrast' -> ['ct'])."""
    t = normalize_answer(text)
    return [lab for lab, pats in HEAD_WORDS[head].items() if any(re.search(p, t) for p in pats)]


_MED_WORDS = re.compile(
    r"\b(image|images|imaging|scan|film|radiograph|x-?ray|ct|mri?|ultrasound|view|plane|lesion|mass|tumou?r|"
    r"fracture|effusion|patient|organ|normal|abnormal|enlarged|contrast|left|right|bilateral|lobe|lung|"
    r"heart|brain|liver|kidney|bowel|bone|density|opaci|nodule|cyst|fluid|air|shown|seen|visible|located|"
    r"present|finding|pathology|artery|vein|vessel|disease|infarct|hemorrhage|haemorrhage|edema|oedema|"
    r"pneumo\w*|cardio\w*|\w+itis|\w+oma|\w+megaly)\b")


def looks_medical(question: str) -> bool:
    return bool(_MED_WORDS.search(normalize_question(question)))
