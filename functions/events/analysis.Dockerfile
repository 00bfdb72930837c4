# The analysis Lambda: a container image, because parselmouth + numpy + PyAV are far
# beyond a zip's 250 MB and the API Lambda must not carry them. No librosa (and so no
# numba compilation at cold start). Built by the CDK app as an image asset:
#   docker build -f functions/events/analysis.Dockerfile .
FROM public.ecr.aws/lambda/python:3.11

COPY pyproject.toml README.md /tmp/src/
COPY shared /tmp/src/shared
COPY functions /tmp/src/functions
RUN pip install --no-cache-dir "/tmp/src[analysis]" --target "${LAMBDA_TASK_ROOT}" \
 && python -m compileall -q "${LAMBDA_TASK_ROOT}" \
 && rm -rf /tmp/src

# Worker processes need /dev/shm, which Lambda lacks: the engine falls back to one
# process there by itself; more memory (>= 1769 MB) buys a faster vCPU instead.
CMD ["functions.events.analysis.handler"]
