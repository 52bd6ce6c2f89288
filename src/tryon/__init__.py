"""Event-driven virtual try-on on AWS.

This package is imported by the Lambda functions, so importing it (and the light
modules ``errors``, ``imaging``, ``validation``, ``workflow``) must never pull in torch,
transformers, diffusers or the sagemaker SDK. Heavy code lives in ``tryon.handlers``,
``tryon.server``, ``tryon.tiny_models`` and ``training``.
"""

__version__ = "0.1.0"
