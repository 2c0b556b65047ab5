"""GenView training through ``GenViewTrainer``: image SSL (MoCo v2, MoCo v3, SimSiam, BYOL,
SimCLR, LeOCLR; the Hallucinator as an option) and image-text (CLIP, SLIP; GenView++ with
``--multi_positive``).

    accelerate launch recipes/train_genview.py --config recipes/configs/mocov3_vitb16_imagenet.yaml
    accelerate launch recipes/train_genview.py --config recipes/configs/slip_vitb16_cc3m.yaml
    genview train --config recipes/configs/mocov3_vitb16_imagenet.yaml --max_steps 100

Copy this file to change a step (another backbone, transform or callback): each step below is
one call into ``genview_hf``.
"""

from __future__ import annotations

import sys

from transformers import set_seed

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.loading import load_split
from genview_hf.distributed import end_distributed
from genview_hf.preflight import check_model_source, disk_full_named
from genview_hf.training import GenViewTrainer, GenViewTrainingArguments, builders, run_record


def main(
    script_args: ScriptArguments, training_args: GenViewTrainingArguments, callbacks: list | None = None
) -> GenViewTrainer:
    """The run; ``callbacks`` are extra ``TrainerCallback``s (from Python: ``main(..., callbacks=[...])``)."""
    # 0. The output folder (writable, not another run's; a resume is checked against its record) and
    #    the model folder, before any work.
    record = run_record.check_run_folder(training_args, script_args)
    check_model_source(training_args.model_name_or_path, "model_name_or_path")

    # 1. The views dataset (images, captions, generated views, stored masks) and its splits.
    load = dict(name=script_args.dataset_name, config=script_args.dataset_config)
    train_dataset = load_split(
        split=script_args.dataset_train_split, max_rows=training_args.max_train_samples, **load
    )
    train_dataset = builders.views_dataset(train_dataset, training_args, where=script_args.dataset_name)
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_split = load_split(split=script_args.dataset_test_split, **load)
        eval_dataset = builders.views_dataset(eval_split, training_args, where=script_args.dataset_name)

    # 2. The model and its processor: an SSL backbone + the method's heads (+ momentum encoder,
    #    queue, Hallucinator), or a CLIPModel (+ SLIP's image SSL head) with its CLIPProcessor.
    set_seed(training_args.seed)  # the heads are initialised here, before the Trainer seeds
    if training_args.is_image_text:
        model, processor = builders.clip_model(training_args)
    else:
        model, processor = builders.ssl_model(training_args)
    quality_model, quality_direction = builders.quality_model(training_args)

    # 3. The trainer: the method's augmented views, the quality weights, the method's loss.
    trainer = GenViewTrainer(
        model,
        training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=builders.collator(training_args, processor, train_dataset),
        processing_class=processor,
        quality_model=quality_model,
        quality_direction=quality_direction,
        callbacks=callbacks,
    )
    monitor = builders.knn_monitor(training_args, script_args.dataset_name, script_args.dataset_config)
    if monitor is not None:
        monitor.attach(trainer)

    # 4. Train (resuming from checkpoint-* when asked), the folder claimed for this run first.
    if training_args.should_save:
        run_record.write_run_record(training_args.output_dir, record)
    result = trainer.train(resume_from_checkpoint=builders.resume_checkpoint(training_args))
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)

    # 5. The plain encoder (ViTModel, ResNetModel, CLIPModel ...), its processor and the model
    #    card at the output root, loadable without genview_hf; pushed when asked.
    with disk_full_named(training_args.output_dir, "the exported encoder at the output root"):
        trainer.save_model()
        trainer.create_model_card(dataset_name=script_args.dataset_name)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return trainer


def cli(argv: list[str] | None = None) -> int:
    script_args, training_args = parse_config((ScriptArguments, GenViewTrainingArguments), argv)
    main(script_args, training_args)
    end_distributed()  # under a launcher: the process groups go now, not in the interpreter's exit
    return 0


if __name__ == "__main__":
    sys.exit(cli())
