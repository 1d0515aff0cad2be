"""sarfusion: SAR + optical satellite imagery (SpaceNet 6 / 9, MultiEarth, SEN1-2)."""
import os as _os

# Nothing may reach the network at run time; these keep hub clients and albumentations quiet.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
