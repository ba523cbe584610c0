# fastpacs in a container: HTTP on 8042, DICOM on 4242, data in /var/lib/fastpacs.
FROM python:3.11-slim
WORKDIR /opt/fastpacs
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
RUN pip install --no-cache-dir -c requirements.lock . \
 && useradd --system --home /var/lib/fastpacs fastpacs \
 && mkdir -p /var/lib/fastpacs && chown fastpacs /var/lib/fastpacs
USER fastpacs
WORKDIR /var/lib/fastpacs
ENV FASTPACS__REMOTE_ACCESS_ALLOWED=true \
    FASTPACS__STORAGE_DIRECTORY=/var/lib/fastpacs/storage \
    FASTPACS__INDEX_DIRECTORY=/var/lib/fastpacs/storage
EXPOSE 8042 4242
VOLUME /var/lib/fastpacs
ENTRYPOINT ["fastpacs", "serve"]
