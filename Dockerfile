FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev gcc pkg-config libvirt-dev chromium fonts-dejavu-core \
      fonts-liberation git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir /app
ENV PATH=/opt/venv/bin:$PATH
