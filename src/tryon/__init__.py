"""Event-driven virtual try-on on AWS.

The packages, by what they may import (docs/architecture.md has the map):

- Lambda-safe, shipped in the Lambda layer: :mod:`tryon.core` (the schema, request contracts,
  endpoint kinds, validation, errors, imaging, S3 URIs, AWS events) and :mod:`tryon.workflow`
  (the logic of every step).
  Standard library, Pillow, boto3 and aws-lambda-powertools only.
- Heavy (torch, transformers, diffusers): :mod:`tryon.handlers` (the SageMaker model
  handlers), :mod:`tryon.server` (the local endpoint server), :mod:`tryon.training`,
  :mod:`tryon.weights` (tiny checkpoints, portable saving).
- Workstation: :mod:`tryon.aws` (packaging, deploying, stacks, executions),
  :mod:`tryon.local` (the whole stack on moto), :mod:`tryon.cli`.
"""

__version__ = "0.1.0"
