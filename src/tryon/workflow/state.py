"""The state document the workflow threads through its states: one typed definition (light).

Step Functions passes one JSON document from state to state. Its shape, in order:

1. ``Receive`` wraps the execution input, whatever it is, as ``{"trigger": <input>}``.
2. ``Prepare`` (:mod:`tryon.workflow.prepare`) answers :class:`Prepared`: ``job``, ``complete``
   and ``manifest`` (``trigger`` is dropped: the job carries what later states need).
3. ``Segment``, ``Inpaint`` and ``Upscale`` add their results under their own keys
   (``ResultPath`` ``$.segment``, ``$.inpaint``, ``$.upscale``), see :data:`STEP_RESULT_KEYS`.
4. ``NoGarmentFound`` sets ``status``; ``Finalize`` and ``RecordFailure`` get
   ``{"state": <the document>, "execution": <execution ARN>}`` (:class:`Envelope`).
5. A ``Catch`` puts the error under ``error`` (:class:`StepError`); ``RecordFailure``'s answer
   goes under ``failure`` (:class:`FailureResult`).

Each Task gets only the keys it reads (the ASL's ``Parameters``): :class:`SegmentInput`,
:class:`InpaintInput`, :class:`UpscaleInput`. Everything here is a ``TypedDict``: the JSON
on the wire is exactly these dicts, and ``tests/unit/test_workflow_state.py`` checks the ASL
against them. Standard library only (Lambda code imports it).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from tryon.core.timeouts import AsyncWait  # how long an asynchronous step waits for its callback


class JobInput(TypedDict):
    """The upload the job was prepared from (the endpoints read this very object version)."""

    bucket: str
    key: str
    uri: str
    version_id: str | None
    etag: str
    size: int
    image: dict[str, Any]  # tryon.core.imaging.ImageHeader as a dict: format, width, height, ...


class JobOutput(TypedDict):
    """Where the job's results go: ``s3://<bucket>/<prefix>`` (``results/<name>/<job-id>/``).

    The endpoints write under ``pending_prefix`` (``pending/<job-id>/``); Finalize publishes
    the images to ``prefix`` once moderation passed them.
    """

    bucket: str
    prefix: str
    pending_prefix: str


class JobEndpoints(TypedDict):
    """Endpoint kind -> SageMaker endpoint name (``sd_upscale`` is None when not upscaling)."""

    clipseg: str
    sd_inpaint: str
    sd_upscale: str | None


class JobGarment(TypedDict):
    """The garment's reference image Prepare checked (tryon.workflow.garment); endpoints read ``uri``."""

    bucket: str
    key: str
    version_id: str | None
    uri: str  # s3://bucket/key?versionId=V: the very version Prepare read
    size: int
    image: dict[str, Any]  # tryon.core.imaging.ImageHeader as a dict


class JobPaintedMask(TypedDict):
    """A painted mask Prepare checked (tryon.workflow.garment_plan): an object under the mask prefix,
    pinned to the version read, or a console's base64 mask Prepare stored in the result folder."""

    source: (
        str  # "s3" (the caller's object) | "console" (base64 in the input, stored as painted[-<name>].png)
    )
    bucket: str
    key: str
    version_id: str | None
    uri: str  # s3://bucket/key?versionId=V: what the Masks state reads
    size: int
    image: dict[str, Any]  # tryon.core.imaging.ImageHeader as a dict (of the mask as given)
    sha256: str  # of the mask's bytes as given (what the job id names for a console mask)


class SegmentAsk(TypedDict):
    """What a garment's CLIPSeg request asks (tryon.core.mask_modes.segment_ask)."""

    role: str  # "garment": its mask (text, class modes) | "keep": only its keep-regions (box, image modes)
    queries: list[str]
    negative_queries: list[str]


class GarmentFiles(TypedDict):
    """Where a garment's files go in the result folder (keys under the job's output prefix)."""

    mask: str  # its final mask: mask.png, or mask-<name>.png in an outfit
    clipseg: (
        str | None
    )  # CLIPSeg's own mask when the workflow composes it (clipseg[-<name>].png, keep[-<name>].png)
    output_stem: str  # the file stem its pass's images are written under (inpainted for the last pass)


class OutfitGarment(TypedDict):
    """One garment of a job and its pass: where it goes (mask mode) and what is painted (parameters).

    A job that is no outfit has exactly one, made of its own parameters (``name`` empty).
    docs/workflow.md, "Where the garment goes" and "Outfits", describes every field.
    """

    index: int  # its pass, in the order garments are worn (tryon.core.mask_modes.CLASSES)
    name: str  # names its files: its class in an outfit ("garment" without one); "" for a lone job
    garment_class: str | None
    mask_mode: str  # text | class | image | box (resolved)
    params: dict[str, Any]  # every garment parameter (tryon.workflow.outfit.GARMENT_PARAMS), effective
    packshot: JobGarment | None  # its garment_image, checked and pinned
    painted: JobPaintedMask | None  # its mask_image, checked and pinned (image mode)
    box: list[int] | None  # its mask_box in pixels of the (EXIF-oriented) photo: left, top, right, bottom
    box_role: str | None  # "mask" (box mode) | "restrict" (text, class: CLIPSeg's mask is cut to it)
    segment: SegmentAsk | None  # its CLIPSeg request, None when it needs none
    files: GarmentFiles


class Job(TypedDict):
    """What Prepare validated: the input, the effective parameters, where results go."""

    job_id: str
    source: str  # "s3-event" | "console"
    preset: str | None
    input: JobInput
    params: dict[str, Any]  # every parameter of tryon.workflow.params, resolved
    garment: JobGarment | None  # the garment_image parameter's object, checked and pinned
    upscale: bool
    #: when upscaling: the mode, tiles and time estimate Prepare held against the endpoint's limit
    #: (tryon.core.upscale_budget.plan); None otherwise
    upscale_plan: dict[str, Any] | None
    ignored_metadata: list[str]
    output: JobOutput
    endpoints: JobEndpoints
    #: endpoint kind -> inference component on the shared endpoint (InferenceComponentName), or None
    components: NotRequired[dict[str, str | None]]
    modes: dict[str, str]  # endpoint kind -> realtime | serverless | async (the ASL picks the path)
    async_waits: dict[str, AsyncWait]  # step -> its callback waits, used when its endpoint is async
    moderation: dict[str, Any]  # tryon.core.content_policy.ModerationConfig.as_dict(): the stack's settings
    garments: list[OutfitGarment]  # in pass order; one for a job that is no outfit
    outfit: bool  # the job lists garments (console garments, <class>.* keys)
    size: list[int]  # the photo's (EXIF-oriented) width and height: every mask's size
    needs_segment: bool  # some garment asks CLIPSeg (else the Segment state is skipped)
    compose_masks: bool  # the Masks state composes the masks (box, painted, keep-regions, outfits)


class Prepared(TypedDict):
    """Prepare's answer: the job, and whether a complete result for it already exists."""

    job: Job
    complete: bool
    manifest: str | None  # s3:// URI of the existing manifest when ``complete`` (or ``running``)
    segment: SegmentStart  # no mask yet (Segment, then Masks when the job composes, write ``$.segment``)
    inpaint: PassesStart  # no pass has run yet (Inpaint runs one pass per entry, while not ``done``)
    running: NotRequired[bool]  # another execution holds the job's claim (tryon.workflow.claim)
    claimed_by: NotRequired[str]  # that execution, when ``running``
    took_over_claim_of: NotRequired[str]  # an expired claim this execution took over


class GarmentMask(TypedDict):
    """One garment's mask in ``$.segment.garments`` (in pass order): what its pass repaints."""

    name: str  # the garment's name (OutfitGarment.name)
    mask_key: str
    coverage: float
    empty: bool  # coverage <= its min_coverage: its pass is skipped (no-garment-found)
    clipseg: NotRequired[
        dict[str, Any] | None
    ]  # its CLIPSeg answer: mask_key, coverage, scores, compute_seconds
    given_up: NotRequired[int]  # pixels a later garment took (mask_overlap later-wins)


class SegmentResult(TypedDict):
    """``$.segment``: the masks (CLIPSeg's, then the Masks state's) and how much of the photo they cover.

    The top-level ``mask_key``/``coverage`` are the job's mask: the one garment's, or for an
    outfit the union of the garments' (``mask.png``).
    """

    mask_key: str
    coverage: float
    empty: bool  # every garment's mask is empty: the job ends as no-garment-found
    garments: list[GarmentMask]
    composed: bool  # written by the Masks state (box, painted, keep-regions, outfit); Segment's are not


class SegmentStart(TypedDict):
    """``$.segment`` before any mask (Prepare's answer carries it): nothing composed yet."""

    composed: bool
    scores: dict[str, Any]
    model: str | None
    timings_ms: dict[str, Any]
    elapsed_ms: float
    compute_seconds: float  # the endpoints' own work (their compute_seconds, summed)


class PassResult(TypedDict):
    """One garment's inpainting pass, in ``$.inpaint.passes``."""

    garment: str  # the garment's name (OutfitGarment.name)
    index: int  # the garment's index in job.garments
    keys: list[str]
    seeds: list[int]
    adapter: Any
    packshot: Any  # the endpoint's report of the garment image it used (None without one)
    refiner: Any
    controls: Any  # keep_body: the endpoint's controls report, control images' keys (or None)
    crop_box: list[int] | None  # the crop window the endpoint inpainted (lines the controls up)
    model: str | None
    timings_ms: list[dict[str, Any]]  # one per request
    elapsed_ms: float
    compute_seconds: float


class PassesStart(TypedDict):
    """``$.inpaint`` before the first pass (Prepare's answer carries it)."""

    passes: list[PassResult]
    done: bool


class InpaintResult(TypedDict):
    """``$.inpaint``: the images so far (the last pass's), with the seeds used; every pass under ``passes``.

    The top-level fields are the last pass's (a lone garment's: its one pass), ``elapsed_ms``
    and ``compute_seconds`` the passes' sums.
    """

    keys: list[str]
    seeds: list[int]
    passes: list[PassResult]
    done: bool  # no garment's pass is left: Upscale or Finalize next
    adapter: Any
    garment: NotRequired[Any]  # the endpoint's report of the garment image it used (None without one)
    refiner: NotRequired[Any]  # the endpoint's report of the SDXL refiner pass: steps, strength (or None)
    # the endpoint's report of keep_body: per control its settings and the control image it wrote (or None)
    controls: NotRequired[Any]
    crop_box: NotRequired[
        list[int] | None
    ]  # the photo window the endpoint inpainted: left, top, right, bottom
    model: str | None
    timings_ms: dict[str, Any]
    elapsed_ms: float
    compute_seconds: float  # the endpoints' own work (their compute_seconds, summed)


class UpscaleResult(TypedDict):
    """``$.upscale``: one upscaled image per inpainted one (one endpoint call each)."""

    keys: list[str]
    seeds: list[int]
    model: str | None
    timings_ms: list[dict[str, Any]]
    elapsed_ms: float
    compute_seconds: float  # the endpoints' own work (their compute_seconds, summed)


class CheckedImage(TypedDict):
    """One image Rekognition checked: its labels (never the image), what was sent, how long it took."""

    field: str  # image | garment_image | the result's file name (inpainted-0.png)
    uri: str
    labels: list[dict[str, Any]]  # tryon.core.content_policy.Label.as_dict(): name, parent, confidence, level
    blocked: list[dict[str, Any]]  # the labels that block under the stack's settings (empty: passed)
    sent: dict[str, Any]  # format, width, height, bytes, converted
    elapsed_ms: float


class ModerationResult(TypedDict):
    """``$.moderation``: ModerateInputs' checks, then ModerateResults' added to them."""

    enabled: bool
    model_version: str | None  # Rekognition's ModerationModelVersion
    calls: int  # DetectModerationLabels calls made for the job
    inputs: list[CheckedImage] | None
    results: list[CheckedImage] | None
    elapsed_ms: dict[str, float]  # inputs, results


class StepError(TypedDict):
    """``$.error``: what a ``Catch`` records (``Error`` is the exception's class name)."""

    Error: str
    Cause: str


class FailureResult(TypedDict):
    """``$.failure``: RecordFailure's answer; the ``Failed`` state ends the execution with it (or,
    for a content refusal, the ``Refused`` state ends it with status ``refused``)."""

    status: str  # "failed" | "refused"
    job_id: str
    step: str
    error: str
    cause: str
    failure: str  # s3:// URI of failures/<job-id>.json


class RefusedResult(TypedDict):
    """The execution's output when the content policy refused the job (the ``Refused`` state)."""

    status: str  # "refused"
    job_id: str
    step: str  # prepare | moderate-inputs | moderate-results
    error: str  # "ContentRefused"
    cause: str
    failure: str  # s3:// URI of failures/<job-id>.json (stage, labels, policy version)


class FinalResult(TypedDict):
    """Finalize's answer, the execution's output when it succeeds."""

    status: str  # "succeeded" | "no-garment-found"
    job_id: str
    manifest: str
    preview: str


class State(TypedDict, total=False):
    """The whole document; each key appears once the state that writes it has run."""

    trigger: Any
    job: Job
    complete: bool
    running: bool
    manifest: str | None
    segment: SegmentResult | SegmentStart
    inpaint: InpaintResult | PassesStart
    upscale: UpscaleResult
    moderation: ModerationResult
    status: str
    error: StepError
    failure: FailureResult


class SegmentInput(TypedDict):
    """What the Segment task is given."""

    job: Job


class MasksInput(TypedDict):
    """What the Masks task is given: the whole document (no ``segment`` when nothing asked CLIPSeg)."""

    state: State


class InpaintInput(TypedDict):
    """What the Inpaint task is given: the passes so far, for the next one."""

    job: Job
    segment: SegmentResult
    inpaint: InpaintResult | PassesStart


class UpscaleInput(TypedDict):
    """What the Upscale task is given."""

    job: Job
    inpaint: InpaintResult


class ModerateInput(TypedDict):
    """What ModerateInputs is given."""

    stage: str  # "input"
    job: Job


class ModerateResultsInput(TypedDict):
    """What ModerateResults is given: the whole document (the results of every path, upscaled or not)."""

    stage: str  # "output"
    state: State


class AsyncSubmitInput(TypedDict):
    """What an asynchronous step's SubmitAsync task is given: the step's input, its name, the task token."""

    step: str
    task_token: str
    job: Job
    segment: NotRequired[SegmentResult]  # Inpaint's input
    inpaint: NotRequired[InpaintResult | PassesStart]  # Inpaint's (the passes so far) and Upscale's input


class Envelope(TypedDict):
    """What Finalize and RecordFailure are given: the whole document and the execution ARN."""

    state: State
    execution: NotRequired[str | None]


class NamedStepEnvelope(Envelope):
    """RecordFailure's input where the state machine names the failed step (the batch state machine)."""

    step: str


#: Workflow step -> the key of :class:`State` its result is stored under, in workflow order.
STEP_RESULT_KEYS: dict[str, str] = {
    "prepare": "job",
    "segment": "segment",
    "masks": "segment",  # the Masks state replaces CLIPSeg's masks by the composed ones
    "inpaint": "inpaint",
    "upscale": "upscale",
}
