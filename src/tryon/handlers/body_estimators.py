"""Depth and pose estimators (transformers) that turn the photo's crop into the body ControlNets' inputs.

- :class:`DepthEstimator`: any ``AutoModelForDepthEstimation`` folder (Depth Anything, DPT/MiDaS,
  ...), with its image processor; its relative depth is resized to the working size and
  rendered near-bright (:func:`tryon.handlers.control_images.depth_to_image`).
- :class:`PoseEstimator`: a ViTPose folder (``VitPoseForPoseEstimation``, 17 COCO keypoints; the
  ViTPose++ mixture-of-experts models run their COCO expert), top-down: it needs a box per
  person. An optional :class:`PersonDetector` (any ``AutoModelForObjectDetection`` folder with
  a ``person`` label, e.g. RT-DETR) finds them in the crop; without one, or when it finds
  nobody, the whole crop is the person's box (the crop already frames the garment on the
  person). Skeletons are drawn OpenPose-style (:func:`tryon.handlers.control_images.draw_skeletons`).

Every estimator is loaded once at start-up and runs once per request, on the working-size
crop, whatever ``num_images``. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.handlers import control_images
from tryon.handlers.compat import dtype_kwargs

#: COCO keypoints a pose estimator must predict (what the OpenPose drawing is made from).
COCO_KEYPOINTS = 17
#: Detections at this score or more count as people.
PERSON_MIN_SCORE = 0.5
#: At most this many people are drawn (the most confident ones).
MAX_PEOPLE = 10
#: The label an object detector must have for people.
PERSON_LABEL = "person"


class EstimatorLayoutError(RuntimeError):
    """An estimator folder cannot serve (a deployment mistake, reported at start-up)."""


@dataclass(frozen=True)
class Estimate:
    """A rendered control image and what the response says about how it was made."""

    image: Image.Image
    details: dict[str, Any]


def _load(folder: Path, model_class: str, device: Any, dtype: Any) -> tuple[Any, Any]:
    """(model in eval mode on ``device``, image processor) from a transformers folder.

    ``model_class`` is an auto class (``AutoModelForDepthEstimation``: any architecture of that
    task) or a model class, whose architecture the folder's ``config.json`` must name (transformers
    would load another architecture's weights into it with a warning, leaving it random).
    """
    import transformers

    cls = getattr(transformers, model_class)
    try:
        if not model_class.startswith("Auto"):
            found = transformers.AutoConfig.from_pretrained(str(folder)).model_type
            if found != cls.config_class.model_type:
                raise ValueError(f"it holds a {found!r} model, not {cls.config_class.model_type!r}")
        model = cls.from_pretrained(str(folder), **dtype_kwargs("transformers", dtype))
        processor = transformers.AutoImageProcessor.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise EstimatorLayoutError(
            f"{folder} is not a {model_class} folder with its image processor: {detail}"
        ) from exc
    return model.to(device).eval(), processor


def _pixel_inputs(processed: Any, model: Any) -> dict[str, Any]:
    """The processor's tensors on the model's device, pixel values in the model's dtype."""
    inputs = {}
    for name, value in processed.items():
        value = value.to(model.device)
        inputs[name] = value.to(model.dtype) if value.is_floating_point() else value
    return inputs


class DepthEstimator:
    """Relative depth of the crop, rendered as the depth ControlNet's input."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model, self.processor = model, processor

    @property
    def name(self) -> str:
        """The model's class (what the response reports)."""
        return type(self.model).__name__

    def __call__(self, image: Image.Image) -> Estimate:
        """The depth map of ``image`` at its own size (near bright)."""
        import torch

        with torch.no_grad():
            inputs = _pixel_inputs(self.processor(images=image, return_tensors="pt"), self.model)
            predicted = self.model(**inputs).predicted_depth
            resized = torch.nn.functional.interpolate(
                predicted.float().unsqueeze(1), size=(image.height, image.width), mode="bicubic"
            )
        depth = resized[0, 0].cpu().numpy()
        return Estimate(control_images.depth_to_image(depth), {"estimator": self.name})


class PersonDetector:
    """People's boxes in the crop, from an object detector with a ``person`` label."""

    def __init__(self, model: Any, processor: Any, *, where: str = "the person detector") -> None:
        self.model, self.processor = model, processor
        labels = {str(v).lower(): int(k) for k, v in model.config.id2label.items()}
        if PERSON_LABEL not in labels:
            raise EstimatorLayoutError(
                f"{where}: the detector has no {PERSON_LABEL!r} label (labels: "
                f"{', '.join(sorted(labels)[:10])}...); a person detector must detect people"
            )
        self.person = labels[PERSON_LABEL]

    def __call__(self, image: Image.Image) -> list[list[float]]:
        """COCO boxes ``[x, y, width, height]`` of the people in ``image``, most confident first."""
        import torch

        with torch.no_grad():
            inputs = _pixel_inputs(self.processor(images=image, return_tensors="pt"), self.model)
            outputs = self.model(**inputs)
        found = self.processor.post_process_object_detection(
            outputs, threshold=PERSON_MIN_SCORE, target_sizes=[(image.height, image.width)]
        )[0]
        people = [
            (float(score), [float(v) for v in box])
            for score, label, box in zip(found["scores"], found["labels"], found["boxes"], strict=True)
            if int(label) == self.person
        ]
        people.sort(key=lambda item: -item[0])
        boxes = []
        for _, (x0, y0, x1, y1) in people[:MAX_PEOPLE]:
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(image.width), x1), min(float(image.height), y1)
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                boxes.append([x0, y0, x1 - x0, y1 - y0])
        return boxes


class PoseEstimator:
    """Body keypoints of the people in the crop (top-down ViTPose), drawn as OpenPose skeletons."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        detector: PersonDetector | None,
        *,
        where: str = "the pose estimator",
    ) -> None:
        self.model, self.processor = model, processor
        if model.config.num_labels != COCO_KEYPOINTS:
            raise EstimatorLayoutError(
                f"{where}: the pose estimator predicts {model.config.num_labels} keypoints; the "
                f"OpenPose drawing needs the {COCO_KEYPOINTS} COCO body keypoints"
            )
        self.experts = int(getattr(model.config.backbone_config, "num_experts", 1) or 1)
        self.detector = detector

    @property
    def name(self) -> str:
        """The model's class (what the response reports)."""
        return type(self.model).__name__

    def __call__(self, image: Image.Image) -> Estimate:
        """The OpenPose drawing of every person found in ``image``, at its size."""
        import torch

        boxes = self.detector(image) if self.detector is not None else []
        detected = bool(boxes)
        if not boxes:
            boxes = [[0.0, 0.0, float(image.width), float(image.height)]]
        with torch.no_grad():
            inputs = _pixel_inputs(self.processor(image, boxes=[boxes], return_tensors="pt"), self.model)
            if self.experts > 1:  # ViTPose++: the COCO expert (dataset index 0)
                inputs["dataset_index"] = torch.zeros(len(boxes), dtype=torch.long, device=self.model.device)
            outputs = self.model(**inputs)
        outputs.heatmaps = outputs.heatmaps.float()
        poses = self.processor.post_process_pose_estimation(outputs, boxes=[boxes])[0]
        people = [
            control_images.to_openpose(
                pose["keypoints"].tolist(), pose["scores"].tolist(), (image.width, image.height)
            )
            for pose in poses
        ]
        drawing = control_images.draw_skeletons(people, image.size)
        details = {
            "estimator": self.name,
            "person_detector": None if self.detector is None else type(self.detector.model).__name__,
            # where each person's box came from: the detector, or the whole crop (none found / no detector)
            "person_boxes": "detected" if detected else "crop",
            "people": len(people),
            "joints": control_images.visible_joints(people),
        }
        return Estimate(drawing, details)


def load_depth(folder: Path, device: Any, dtype: Any) -> DepthEstimator:
    """The depth estimator in ``folder``."""
    return DepthEstimator(*_load(folder, "AutoModelForDepthEstimation", device, dtype))


def load_pose(folder: Path, detector_folder: Path | None, device: Any, dtype: Any) -> PoseEstimator:
    """The pose estimator in ``folder``, with the person detector in ``detector_folder`` if given."""
    detector = None
    if detector_folder is not None:
        model, processor = _load(detector_folder, "AutoModelForObjectDetection", device, dtype)
        detector = PersonDetector(model, processor, where=str(detector_folder))
    model, processor = _load(folder, "VitPoseForPoseEstimation", device, dtype)
    return PoseEstimator(model, processor, detector, where=str(folder))
