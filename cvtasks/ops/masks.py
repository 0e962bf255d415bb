"""The mask value of pixels to ignore, shared by readers, losses, metrics, reports and pictures.

It lives at the bottom of the package so that losses and metrics need not import the readers.
"""

IGNORE_INDEX = 255
"""Mask value of pixels that count in no loss and no metric (Pascal VOC's object borders).

Class indices therefore run from 0 to 254: masks are stored as 8-bit images.
"""

__all__ = ["IGNORE_INDEX"]
