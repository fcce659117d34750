#!/usr/bin/env bash
# orchctl links only the wire contract (Orchestrator.Api) and the client (Orchestrator.Client), so it
# builds for an operator's macOS or Windows machine: this proves it, cheaply (a plain build, not AOT,
# into its own artifacts path so the Linux build's obj/ is left alone). make test runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
DOTNET=${DOTNET:-dotnet}
for rid in osx-arm64 win-x64; do
  start=$(date +%s)
  "$DOTNET" build src/orchctl/orchctl.csproj -c Release -r "$rid" -p:PublishAot=false -p:RunAnalyzers=false \
    --artifacts-path "artifacts/cross-orchctl/$rid" --nologo -v:q
  echo "orchctl builds for $rid ($(( $(date +%s) - start )) s)"
done
