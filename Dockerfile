# sarfusion competition image: CUDA 13.0 runtime (torch 2.14.1's PyPI build is cu130), GDAL from
# Ubuntu, the pinned Python stack of requirements.txt (the same pins `make setup` installs).
#   docker build -t sarfusion .
#   docker run --gpus all --ipc=host -v /path/data:/data:ro -v /path/wdata:/wdata sarfusion ./train.sh /data
#   docker run --gpus all --ipc=host -v /path/data:/data:ro -v /path/wdata:/wdata sarfusion ./test.sh /data /wdata/out.csv
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 \
    WDATA=/wdata SARFUSION_PYTHON=/opt/venv/bin/python
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential libgdal-dev gdal-bin \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /work
COPY requirements.txt pyproject.toml README.md ./
# numpy first: GDAL's bindings built without numpy silently lack array support.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip wheel setuptools \
    && /opt/venv/bin/pip install --no-cache-dir numpy==1.26.4 \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-build-isolation "GDAL==$(gdal-config --version)" \
    && /opt/venv/bin/python -c "from osgeo import gdal_array"
COPY . .
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -e . && chmod +x train.sh test.sh
# The full preset's ImageNet encoder (EfficientNet-B5), fetched now so `docker run` needs no network
# (HF_HUB_OFFLINE=1 above then reads it from this cache); a failed fetch fails the build.
RUN HF_HUB_OFFLINE=0 /opt/venv/bin/python -c "from sarfusion.models.segmentation import resolve_encoder_weights as r; \
    print(len(r('efficientnet-b5', 'imagenet')), 'encoder tensors cached')"
ENV PATH=/opt/venv/bin:$PATH
