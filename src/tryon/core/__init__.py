"""The Lambda-safe kernel: the schema (one row per job parameter and endpoint kind), request
contracts, endpoint kinds, validation, errors, imaging, S3 URIs and object versions, AWS events.

Standard library, Pillow and aws-lambda-powertools only: ``functions/`` and :mod:`tryon.workflow`
import from here, and the Lambda layer ships exactly ``tryon.core`` and ``tryon.workflow``.
"""
