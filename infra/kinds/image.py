"""Build side of the ``image`` input kind: ``preprocess: {image: {size, mean, std, layout}}``.

The model must take one FP32 ``[N, C, H, W]`` (or NHWC) input that the sizes fit. Raw
calibration and validation data: a folder of PNG/JPEG files (searched recursively; a file in a
sub-folder is labelled with the sub-folder's name) or ``.jsonl`` (``{"image": <base64>, "label"?: ...}``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.kinds import BuildKind, ProcessingError, register
from infra.kinds.text import read_jsonl
from layers.kinds.image import ImageKind

IMAGE_SUFFIXES = ImageKind.batch_file_suffixes


class ImagePreprocess(BaseModel):
    """PNG/JPEG bytes → float32 tensor: decode, RGB (3 channels) or L (1), resize, /255, normalize."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    size: tuple[int, int] = Field(description="[height, width] the model takes")
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @model_validator(mode="after")
    def _channels(self) -> ImagePreprocess:
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ValueError("mean and std need one value per channel: 3 (RGB) or 1 (grayscale)")
        if min(self.size) < 1 or any(s == 0 for s in self.std):
            raise ValueError("size must be positive and std non-zero")
        return self


class ImageBuildKind(BuildKind):
    name = "image"
    selector = "image"
    choice = "'image' (PNG/JPEG in)"
    catalog_fields: ClassVar[dict[str, Any]] = {"image": (ImagePreprocess | None, None)}
    raw_data_suffixes = (".jsonl",)
    raw_data_folder = True
    libraries = ("pillow",)

    def block(self, pre: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
        img, inputs = pre.image, sig["inputs"]
        if len(inputs) != 1 or inputs[0]["datatype"] != "FP32" or len(inputs[0]["shape"]) != 4:
            raise ProcessingError(f"preprocess.image fills one FP32 [N, C, H, W] (or NHWC) input; the model "
                                  f"takes {[(t['name'], t['datatype'], t['shape']) for t in inputs]}")
        want = [len(img.mean), *img.size] if img.layout == "NCHW" else [*img.size, len(img.mean)]
        got = inputs[0]["shape"][1:]
        if any(g >= 0 and g != w for g, w in zip(got, want, strict=True)):
            raise ProcessingError(f"preprocess.image gives {img.layout} {want} per image but the model's input "
                                  f"{inputs[0]['name']!r} is {got} (-1 = any); fix size, layout or the "
                                  "number of mean/std values")
        return ({"kind": self.name, "size": list(img.size), "mean": list(img.mean), "std": list(img.std),
                 "layout": img.layout}, {})

    def probe_sizes(self, pre_block: Mapping[str, Any]) -> dict[str, int]:
        return {"spatial": int(pre_block["size"][0])}

    def read_items(self, path: Path, key: str) -> tuple[list, list]:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            labels = [p.parent.name if p.parent != path else None for p in found]
            return [p.read_bytes() for p in found], labels
        return read_jsonl(path, key, self.name, "base64 image", lambda v: base64.b64decode(v, validate=True))


IMAGE = register(ImageBuildKind())
