"""The paper's own numbers (Tables 1 and 2), for the tables the kit regenerates.

Source: Ronneberger, Fischer & Brox, MICCAI 2015, Tables 1 and 2 (the ISBI
2012 leaderboard of 2015-03-06 and the ISBI cell tracking challenge 2015).
"""

from __future__ import annotations

#: Table 1: (rank, group, warping error, Rand error, pixel error); rank None = human values
TABLE1 = [
    (None, "human values", 0.000005, 0.0021, 0.0010),
    (1, "u-net", 0.000353, 0.0382, 0.0611),
    (2, "DIVE-SCI", 0.000355, 0.0305, 0.0584),
    (3, "IDSIA", 0.000420, 0.0504, 0.0613),
    (4, "DIVE", 0.000430, 0.0545, 0.0582),
    (10, "IDSIA-SCI", 0.000653, 0.0189, 0.1027),
]

#: Table 2: (name, PhC-U373 IOU, DIC-HeLa IOU); None = no entry. "IOU" is the CTC SEG measure.
TABLE2 = [
    ("IMCB-SG (2014)", 0.2669, 0.2935),
    ("KTH-SE (2014)", 0.7953, 0.4607),
    ("HOUS-US (2014)", 0.5323, None),
    ("second-best 2015", 0.83, 0.46),
    ("u-net (2015)", 0.9203, 0.7756),
]

UNET_TABLE1 = {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}
UNET_TABLE2 = {"PhC-C2DH-U373": 0.9203, "DIC-C2DH-HeLa": 0.7756}
