"""The Lambda-safe kernel: request contracts, endpoint kinds, validation, errors, imaging.

Standard library, Pillow and aws-lambda-powertools only: ``functions/`` and :mod:`tryon.workflow`
import from here, and the Lambda layer ships exactly ``tryon.core`` and ``tryon.workflow``.
"""
