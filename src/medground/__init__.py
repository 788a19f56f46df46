"""medground: read medical images in words."""
from medground.io.image import MedGroundInputError, MedImage

__version__ = "0.1.0"


def load(path, **kw) -> MedImage:
    """Read any supported image (NIfTI, NRRD, DICOM file/series/zip, PNG/JPG/BMP/TIFF)."""
    from medground.io import load as _load

    return _load(path, **kw)


from medground import segment  # noqa: E402  (callable module: medground.segment(image, boxes=...))


__all__ = ["MedImage", "MedGroundInputError", "load", "segment", "__version__"]
