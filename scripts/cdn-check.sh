#!/usr/bin/env bash
# Checks deploy/cdn beyond what tests/it/cdn.rs runs (nginx -t and real nginx in front of the
# server): the CloudFront template with cfn-lint (CloudFormation's resource schemas, offline)
# and yamllint. Cloudflare's settings are documentation (deploy/cdn/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cfn-lint >/dev/null 2>&1 || pip install --quiet --disable-pip-version-check cfn-lint
python3 -c 'import yamllint' 2>/dev/null || pip install --quiet --disable-pip-version-check yamllint
yamllint --strict -c deploy/yamllint.yaml deploy/cdn/cloudfront/release-edge.yaml
cfn-lint deploy/cdn/cloudfront/release-edge.yaml
echo "cdn: ok: deploy/cdn/cloudfront/release-edge.yaml passes yamllint and cfn-lint $(cfn-lint --version | awk '{print $NF}')"
