# LearningChain node image. deploy/README.md says how to run it (docker compose, Kubernetes) and
# what was validated without a container engine (hadolint, the entry command run outside a container).
FROM python:3.11-slim

# no .pyc written at run time (the sources are compiled below; the root filesystem can be read-only),
# unbuffered logs, matplotlib's cache in /tmp (the only writable place besides /data)
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app

# the pinned requirements first, so a change of the sources does not reinstall them
# (requirements.txt only: the optional PyTorch backend of requirements-torch.txt is not in the image)
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# the node's user (numeric, so Kubernetes' runAsNonRoot can check it) and its data dir
RUN groupadd --system --gid 10001 learningchain \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin learningchain \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 700 /data

COPY node.py ./
COPY learningchain/ learningchain/
COPY miner/ miner/
COPY data/ data/
COPY deploy/entrypoint.py deploy/healthcheck.py deploy/mknet.py deploy/
RUN python -m compileall -q learningchain miner deploy

# the environment deploy/entrypoint.py turns into `node.py run` flags (every LC_* variable is a run
# flag); listening on every address of the container, as a published port needs
ENV LC_DATA_DIR=/data \
    LC_HOST=0.0.0.0 \
    LC_PORT=5000 \
    HOME=/data

VOLUME ["/data"]
EXPOSE 5000
USER 10001:10001

# GET /healthz on the node (HTTPS against the network CA when LC_TLS_CERT is set); curl is not in slim
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py", "/healthz"]

ENTRYPOINT ["python", "/app/deploy/entrypoint.py"]
