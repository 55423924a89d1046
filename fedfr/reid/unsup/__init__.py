"""Re-ID with no target labels: HSR (thesis Ch. 4), unsupervised domain adaptation by
clustering with two rectifications (docs/unsupervised-reid.md, section HSR).

Modules: ``features`` (global + upper / lower part features), ``clustering`` (DBSCAN on the
k-reciprocal Jaccard distance in bounded memory), ``pbh`` (part-based homogeneity), ``icm``
(inter-camera mining), ``losses`` (weighted soft-plus triplets), ``hsr`` (the loop).
"""
