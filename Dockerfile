# syntax=docker/dockerfile:1
# One image for the three processes; the Helm chart chooses the command per component:
#   whatsapp-operator | whatsapp-facade | whatsapp-receiver
#
#   docker build -t whatsapp-channels:0.1.0 .
#
# Python 3.11 is the version the test suite runs on.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the project and its dependencies into a virtual environment -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the distribution is built from (pyproject's packages); the rest of the
# repository (tests, the Go control plane, the chart) never enters the image.
COPY pyproject.toml ./
COPY contract/ contract/
COPY operator/ operator/
COPY api/ api/
COPY controlplane/localkube/ controlplane/localkube/
COPY launcher/ launcher/
COPY standin/ standin/
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall --yes pip

# --- run: the interpreter, the environment, a non-root user; nothing else -----------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="whatsapp-channels" \
      org.opencontainers.image.description="WhatsApp Business channels on Kubernetes: operator, REST facade, webhook receiver" \
      org.opencontainers.image.licenses="UNLICENSED"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# The chart's podSecurityContext runs as 65532 too; the root filesystem can be read-only
# (bytecode is compiled at install time; /tmp is an emptyDir in the chart).
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
CMD ["whatsapp-facade"]
