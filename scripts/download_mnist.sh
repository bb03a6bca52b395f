#!/usr/bin/env bash
# download_mnist.sh DEST: fetches the four MNIST IDX files (gzipped) into DEST
# and checks them. The sha256 values are of the DECOMPRESSED files: mirrors
# recompress (different gzip headers and levels), the IDX bytes never change.
# Then: dtrain-prep mnist DEST data/mnist-h5
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DEST" >&2
  exit 2
fi
dest=$1
# The mirror torchvision uses; the original yann.lecun.com site now refuses.
mirror=${MNIST_MIRROR:-https://ossci-datasets.s3.amazonaws.com/mnist}

declare -A sha256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)

fetch() { # url file
  if command -v curl >/dev/null; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --tries=3 -O "$2" "$1"
  else
    echo "download_mnist.sh: error: need curl or wget" >&2
    exit 2
  fi
}

mkdir -p "$dest"
for name in "${!sha256[@]}"; do
  file="$dest/$name.gz"
  if [ ! -s "$file" ]; then
    echo "fetching $mirror/$name.gz"
    fetch "$mirror/$name.gz" "$file.part"
    mv "$file.part" "$file"
  fi
  got=$(gzip -dc "$file" | sha256sum | cut -d' ' -f1) || got="unreadable (bad gzip)"
  if [ "$got" != "${sha256[$name]}" ]; then
    echo "download_mnist.sh: error: $file: sha256 of the decompressed data is $got," \
      "expected ${sha256[$name]} (delete it and retry)" >&2
    exit 1
  fi
  echo "ok $file"
done
