"""The face domain: data sources (synthetic faces, image folders, RecordIO, the MS-Celeb-1M
split), face models, the face evaluation protocols (personalised 1:1 / 1:N, IJB-C, ``.bin``
sets), training (pre-training, FedFR's local round, two-stage personalisation) and the
experiment workspace. The person re-ID domain is its sibling, ``fedfr/reid/``; the methods
(losses, hard negatives, DFC, aggregation) live at the top of ``fedfr/``.
"""
