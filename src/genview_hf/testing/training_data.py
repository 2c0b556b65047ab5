"""Hand-made batches for the training tests and the benchmarks, following the collators' contract.

``SyntheticViews`` is a map-style dataset whose rows are already tensors (``pixel_values_1``,
``pixel_values_2``, ``masks_1``, ``masks_2``, ``pixel_values_orig``; or the CLIP/SLIP keys; or a
GenView++ multi-positive row),
derived from the row index only, so every run, process and resume sees the same rows; the
default ``transformers`` collator stacks them.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class SyntheticViews(Dataset):
    """``length`` rows of random views (size ``image_size``) for ``kind`` ssl | clip | slip."""

    def __init__(
        self,
        length: int = 16,
        image_size: int = 32,
        kind: str = "ssl",
        text_length: int = 8,
        vocab_size: int = 500,
    ) -> None:
        if kind not in ("ssl", "clip", "slip", "multi"):
            raise ValueError(f"unknown kind {kind!r}: expected ssl, clip, slip or multi")
        self.length, self.image_size, self.kind = length, image_size, kind
        self.text_length, self.vocab_size = text_length, vocab_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        generator = torch.Generator().manual_seed(1000 + index)
        size = self.image_size

        def image() -> torch.Tensor:
            return torch.randn(3, size, size, generator=generator)

        if self.kind == "ssl":
            # a blob of foreground in the centre, a little different per view
            mask = torch.zeros(size, size)
            mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
            return {
                "pixel_values_1": image(),
                "pixel_values_2": image(),
                "pixel_values_orig": image(),
                "masks_1": (mask + 0.3 * torch.rand(size, size, generator=generator)).clamp(0, 1),
                "masks_2": (
                    mask.roll(index % 5, dims=1) + 0.3 * torch.rand(size, size, generator=generator)
                ).clamp(0, 1),
            }
        ids = torch.randint(3, self.vocab_size, (self.text_length,), generator=generator)
        ids[0], ids[-1] = 0, 1  # tiny tokenizer: <|startoftext|> = 0, <|endoftext|> = 1
        row = {
            "input_ids": ids,
            "attention_mask": torch.ones(self.text_length, dtype=torch.long),
            "pixel_values": image(),
        }
        if self.kind == "slip":
            row.update(pixel_values_1=image(), pixel_values_2=image())
        if self.kind == "multi":  # GenView++: the real image and 2 generated views, their masks
            mask = torch.zeros(size, size)
            mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
            row["pixel_values"] = torch.stack([image(), image(), image()])
            row["masks"] = torch.stack([mask.roll(shift, dims=1) for shift in (0, 2, 4 + index % 3)])
            row["pixel_values_real"] = image()
            row["masks_real"] = mask
        return row
