"""The S3-triggered try-on workflow: the logic behind each Lambda function (light).

Only boto3, Pillow and aws-lambda-powertools may be imported from here; the Lambda
functions in ``functions/`` are thin wrappers around :mod:`tryon.workflow.steps`.
"""
