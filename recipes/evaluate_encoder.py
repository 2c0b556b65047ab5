"""Evaluate an encoder: kNN, linear probe, zero-shot classification, image-text retrieval.

    python recipes/evaluate_encoder.py --model_name_or_path outputs/mocov3-genview \
        --dataset_name sample:digits --protocols knn linear --update_card
    genview evaluate --model_name_or_path user/clip-genview --dataset_name sample:shapes \
        --protocols zero_shot retrieval

Writes ``eval_results.json`` to ``--output_dir`` and, with ``--update_card``, adds the results
(model-index metadata and a table) to the model folder's ``README.md``.
"""

from __future__ import annotations

import json
import os
import sys

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.loading import load_split
from genview_hf.data.views import to_contract_columns
from genview_hf.evaluation import add_eval_results_to_card, evaluate_encoder, write_results
from genview_hf.evaluation.arguments import EvaluationArguments
from genview_hf.evaluation.protocols import check_protocols
from genview_hf.preflight import check_model_source


def main(script_args: ScriptArguments, eval_args: EvaluationArguments) -> dict[str, float]:
    # 1. The splits: the train split feeds the kNN bank and the linear probe, the test split is scored.
    protocols = check_protocols(eval_args.protocols)
    check_model_source(eval_args.model_name_or_path, "model_name_or_path")  # a local folder that cannot load
    needs_train = any(name in ("knn", "linear") for name in protocols)

    def split(name: str, max_rows: int | None):
        dataset = load_split(script_args.dataset_name, name, script_args.dataset_config, max_rows=max_rows)
        return to_contract_columns(dataset, script_args.image_column, script_args.caption_column)

    train = split(script_args.dataset_train_split, eval_args.max_train_samples) if needs_train else None
    test = split(script_args.dataset_test_split, eval_args.max_test_samples)

    # 2. The protocols, on features cached by (weights, data, pooling, processor).
    cache_dir = (
        None
        if eval_args.no_cache
        else (eval_args.cache_dir or os.path.join(eval_args.output_dir, "feature_cache"))
    )
    results = evaluate_encoder(
        eval_args.model_name_or_path,
        test,
        train_dataset=train,
        protocols=protocols,
        label_column=script_args.label_column,
        k=eval_args.k,
        temperature=eval_args.temperature,
        linear_lrs=eval_args.linear_lrs,
        linear_epochs=eval_args.linear_epochs,
        pooling=eval_args.pooling,
        batch_size=eval_args.batch_size,
        num_workers=eval_args.num_workers,
        cache_dir=cache_dir,
        device=eval_args.device,
        seed=eval_args.seed,
        **({"templates": eval_args.templates} if eval_args.templates else {}),
    )

    # 3. eval_results.json, and the results in the model card.
    path = write_results(
        results,
        eval_args.output_dir,
        model_name_or_path=eval_args.model_name_or_path,
        dataset_name=script_args.dataset_name,
        dataset_test_split=script_args.dataset_test_split,
        dataset_train_split=script_args.dataset_train_split if needs_train else None,
        protocols=protocols,
    )
    print(json.dumps(results, indent=2, sort_keys=True))
    print(f"results written to {path}")
    if eval_args.update_card:
        card = add_eval_results_to_card(
            eval_args.model_name_or_path,
            results,
            dataset_name=script_args.dataset_name,
            dataset_config=script_args.dataset_config,
            dataset_split=script_args.dataset_test_split,
        )
        print(
            f"model card updated: {len(card.data.eval_results)} results in {eval_args.model_name_or_path}/README.md"
        )
    return results


def cli(argv: list[str] | None = None) -> int:
    script_args, eval_args = parse_config((ScriptArguments, EvaluationArguments), argv)
    main(script_args, eval_args)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
