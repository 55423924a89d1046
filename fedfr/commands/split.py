"""``fedfr split``: build the paper's MS-Celeb-1M split manifest from a RecordIO or image folder.

    fedfr split --dataset recordio --data-root /data/faces_emore --out split.json
    fedfr split --dataset folder --data-root /data/faces --scenario 100x10 --authors-rule \
        --export-dir /data/nodes --export-format recordio

Writes the manifest (``FederatedSplit`` JSON) and prints its summary; with ``--export-dir``
each node's own data is written there by ``fedfr.face.data.export.export_node_data``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from fedfr.face.data import build_source
from fedfr.face.data.ms1m import AUTHORS_RULE, SCENARIOS, MS1MSpec, build_ms1m_split

log = logging.getLogger("fedfr.split")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = MS1MSpec()
    p.add_argument("--dataset", choices=("recordio", "folder"), required=True,
                   help="source format: RecordIO (.rec + .idx) or an image folder")
    p.add_argument("--data-root", required=True, help=".rec file / its folder, or image folder")
    p.add_argument("--out", type=Path, required=True, help="manifest to write (JSON)")
    p.add_argument("--scenario", choices=sorted(SCENARIOS),
                   help="clients x identities (sets --num-clients and --ids-per-client)")
    p.add_argument("--num-clients", type=int, default=d.num_clients)
    p.add_argument("--ids-per-client", type=int, default=d.ids_per_client)
    p.add_argument("--num-public-ids", type=int, default=d.num_public_ids)
    p.add_argument("--client-pool-ids", type=int, default=d.client_pool_ids,
                   help="identities reserved for clients (the scenarios draw from them)")
    p.add_argument("--train-per-id", type=int, default=d.train_per_id)
    p.add_argument("--test-per-id", type=int, default=d.test_per_id)
    p.add_argument("--num-generic-ids", type=int, default=d.num_generic_ids,
                   help="held-out identities for the generic protocol (paper: IJB-C, so 0)")
    p.add_argument("--min-images", type=int, default=d.min_images,
                   help="keep identities with at least this many images")
    p.add_argument("--max-images", type=int, default=d.max_images,
                   help="... and at most this many (0: no bound)")
    p.add_argument("--authors-rule", action="store_true",
                   help=f"the authors' code: {AUTHORS_RULE[0] - 1} < n < {AUTHORS_RULE[1] + 1}")
    p.add_argument("--public-images-per-id", type=int, default=d.public_images_per_id)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--export-dir", type=Path,
                   help="also write each node's own data here (fedfr.face.data.export)")
    p.add_argument("--export-format", choices=("recordio", "folder"), default="recordio")


def spec_from_args(args: argparse.Namespace) -> MS1MSpec:
    clients, ids = SCENARIOS[args.scenario] if args.scenario else (args.num_clients,
                                                                  args.ids_per_client)
    lo, hi = AUTHORS_RULE if args.authors_rule else (args.min_images, args.max_images)
    return MS1MSpec(num_public_ids=args.num_public_ids, client_pool_ids=args.client_pool_ids,
                    num_clients=clients, ids_per_client=ids, train_per_id=args.train_per_id,
                    test_per_id=args.test_per_id, num_generic_ids=args.num_generic_ids,
                    min_images=lo, max_images=hi,
                    public_images_per_id=args.public_images_per_id, seed=args.seed)


def main(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    source = build_source(args.dataset, root=args.data_root)
    log.info("source %s: %d images of %d identities", source.name, len(source),
             source.num_identities)
    split = build_ms1m_split(source, spec)
    split.save(args.out)
    summary = split.summary()
    summary.pop("clients")
    print(json.dumps({"manifest": str(args.out), "digest": split.digest(), **summary}, indent=1))
    if args.export_dir is not None:
        from fedfr.face.data.export import export_node_data  # the deployment module (issue 4)

        export_node_data(source, split, args.export_dir, fmt=args.export_format)
        print(f"node data written to {args.export_dir} ({args.export_format})")
    return 0
