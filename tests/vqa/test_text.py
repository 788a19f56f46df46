from medground.vqa.text import (head_labels, is_closed, is_yes_no, looks_medical, normalize_answer, options,
                                primary_type, rule_type)


def test_normalize_answer_vqa_rad_style():
    assert normalize_answer("Yes") == "yes"
    assert normalize_answer("  Right  lobe. ") == "right lobe"
    assert normalize_answer("X-ray") == "x-ray"
    assert normalize_answer("patient's left") == "patient s left"


def test_options_and_closed_forms():
    assert options("Is this an MRI or a CT?") == ["mri", "ct"]
    assert options("Is the abnormality focal or diffuse?") == ["focal", "diffuse"]
    assert options("What is the organ?") == []
    assert is_closed("Are the lungs normal appearing?")
    assert is_closed("Is this axial or coronal?") and not is_yes_no("Is this axial or coronal?")
    assert not is_closed("Where is the lesion?")


def test_rule_types_and_labels():
    assert rule_type("How many lesions are there?") == "COUNT"
    assert rule_type("In what plane was this image taken?") == "PLANE"
    assert rule_type("What imaging modality was used?") == "MODALITY"
    assert rule_type("Where is the mass located?") == "POS"
    assert primary_type("PRES, POS") == "PRES" and primary_type("ATRIB") == "ATTRIB"
    assert head_labels("MRI - FLAIR", "modality") == ["mri"]
    assert head_labels("ct with contrast", "modality") == ["ct"]
    assert head_labels("PA", "plane") == ["pa"]
    assert head_labels("the brain", "organ") == ["head"]


def test_medical_check():
    assert looks_medical("Is there a pleural effusion?")
    assert not looks_medical("What is the capital of France?")
