# One image for the API, Flower's neighbours and (optionally) a containerised worker.
# The worker needs QEMU's tools and libvirt's client (it drives the HOST's libvirtd through
# its socket) and debootstrap + e2fsprogs to build golden images.
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev gcc pkg-config libvirt-dev chromium fonts-dejavu-core \
      fonts-liberation git ca-certificates curl \
      qemu-utils libvirt-clients debootstrap e2fsprogs util-linux \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir /app
ENV PATH=/opt/venv/bin:$PATH
# API: GET /health answers while the process runs (readiness is /ready)
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s \
  CMD curl -fsS http://127.0.0.1:8000/health || exit 1
