"""The input contract of a study's networks: what a sample is before the network sees it, and how
a raw sample becomes that. It is what the data pipeline did (``data.py`` for images,
``event_datasets.py`` for event frames), recorded so that trained weights can be used on new data
without reading this package: ``architecture.json`` holds it as ``"input"``, ``result.json`` as
well, and the exported ``model.py`` applies it in ``preprocess(images)``.

Two encodings:

* ``"direct"`` (every image dataset): raw pixels are integers ``0 .. raw_max`` (uint8), one
  image ``[C, H, W]``; each becomes ``(pixel / scale - mean[c]) / std[c]`` per channel ``c``, and
  the network sees the same normalised image at every timestep (and averages its outputs over
  them). ``precision`` says how the pipeline computed it, so that ``preprocess`` gives the same
  float32 numbers to the last bit: ``"float64"`` (``data.py``'s train-split statistics, computed
  in float64, then rounded to float32) or ``"float32"`` (the fixed constants of CIFAR and
  TinyImageNet: ``pixel * (1 / (scale * std)) - mean / std`` in float32, as ``data._normalise``).
* ``"event-frames"`` (DVS datasets): a sample is ``T`` frames ``[T, 2, S, S]`` of event counts
  per time bin, polarity and pixel (``frames`` says how they are binned); each count becomes
  ``log1p(count)`` (float32), and frame ``t`` is the network's input at timestep ``t``.

No torch: the contract is plain numbers and words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DIRECT, EVENT_FRAMES = "direct", "event-frames"
FLOAT64, FLOAT32 = "float64", "float32"


@dataclass(frozen=True)
class DirectInput:
    """Images fed directly, the same normalised image at every timestep."""

    dataset: str
    shape: tuple[int, int, int]  # [C, H, W]
    raw_max: int  # raw pixels are integers 0 .. raw_max
    scale: float  # pixel / scale lies in [0, 1]
    mean: tuple[float, ...]  # per channel, of pixel / scale
    std: tuple[float, ...]
    statistics: str  # where mean and std come from, in a few words
    precision: str  # FLOAT64 or FLOAT32: how the pipeline computed the normalised values
    classes: tuple[str, ...] | None  # class names by label, where known
    # the train split the statistics were measured on (None: fixed constants)
    train_images: int | None = None
    split_seed: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None

    def as_dict(self, timesteps: int) -> dict[str, Any]:
        """The JSON form of the contract for a network of ``timesteps`` steps (short strings:
        ``model.py`` holds it in lines of at most 100 characters)."""
        if self.precision == FLOAT64:
            computed = "in float64, then rounded to float32"
        else:
            computed = "in float32, as pixel * (1 / (scale * std)) - mean / std"
        normalise: dict[str, Any] = {
            "formula": "(pixel / scale - mean[c]) / std[c] per channel c",
            "computed": computed,
            "precision": self.precision,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "statistics": self.statistics,
        }
        if self.split_seed is not None:
            normalise["split"] = {
                "train_images": self.train_images,
                "seed": self.split_seed,
                "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction,
            }
        channel_axis = ", or [N, H, W]" if self.shape[0] == 1 else ""
        return {
            "dataset": self.dataset,
            "encoding": DIRECT,
            "timesteps": timesteps,
            "shape": list(self.shape),
            "raw": {
                "dtype": "uint8",
                "min": 0,
                "max": self.raw_max,
                "layout": f"[N, *shape], or channels last [N, H, W, C]{channel_axis}",
            },
            "normalise": normalise,
            "encoding_note": "the image is the input at every timestep; outputs are averaged",
            "classes": None if self.classes is None else list(self.classes),
        }


@dataclass(frozen=True)
class EventFramesInput:
    """Event-camera recordings as frames of event counts, one frame per timestep."""

    dataset: str
    shape: tuple[int, int, int, int]  # [T, 2, S, S]
    sensor_size: int  # the sensor's width and height (events' x and y are 0 .. sensor_size - 1)
    classes: tuple[str, ...] | None

    def as_dict(self, timesteps: int) -> dict[str, Any]:
        steps, channels, size, _ = self.shape
        return {
            "dataset": self.dataset,
            "encoding": EVENT_FRAMES,
            "timesteps": timesteps,
            "shape": list(self.shape),
            "raw": {
                "dtype": "integer counts",
                "min": 0,
                "layout": f"[N, {steps}, {channels}, {size}, {size}] event counts",
            },
            "frames": {
                "sensor": [self.sensor_size, self.sensor_size],
                "size": size,
                "bins": f"T = {steps} equal time bins from the first event, at t0",
                "bin_width": "ceil((t_last - t0 + 1) / T): every event is counted",
                "tonic": "ToFrame(time_window=W, start_time=t0, end_time=t0 + T * W)",
                "pixels": f"x * {size} // {self.sensor_size}, y * {size} // {self.sensor_size}",
                "channels": ["polarity 0", "polarity 1"],
                "values": "events per time bin, polarity and pixel: frames[t, p, y, x]",
            },
            "normalise": {
                "formula": "log1p(count)",
                "computed": "in float32",
                "precision": FLOAT32,
            },
            "encoding_note": f"frame t of the {steps} is the input at timestep t",
            "classes": None if self.classes is None else list(self.classes),
        }


InputContract = DirectInput | EventFramesInput
