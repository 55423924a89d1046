"""Semi-supervised re-ID with identity-disjoint labelled / unlabelled training sets: SGC-DPL
(dissertation Ch. 3). ``splits`` (the labelled / unlabelled manifests), ``clustering`` (affinity
propagation with per-point preferences, SG-AP, DBSCAN), ``reliability`` (tau_l and the reliable
subsets), ``pseudo_labels`` (soft targets on an expanded classifier), ``sgc_dpl`` (the training
loop and its ablation switches). See docs/unsupervised-reid.md, section "SGC-DPL".
"""
