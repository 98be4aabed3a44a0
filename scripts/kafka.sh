#!/usr/bin/env bash
# Puts the Kafka broker jars the tests run (scripts/kafka/pom.xml: kafka_2.13 + runtime
# dependencies + slf4j-simple) into ~/.cache/agentgate/kafka-<version>/libs, resolved by Maven
# from Maven Central. Cached: does nothing when the jars are there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${AGENTGATE_KAFKA_VERSION:-4.1.1}"
dest="${XDG_CACHE_HOME:-$HOME/.cache}/agentgate/kafka-${version}/libs"
if compgen -G "$dest/kafka_2.13-${version}.jar" >/dev/null && compgen -G "$dest/slf4j-simple-*.jar" >/dev/null; then
  exit 0
fi
command -v mvn >/dev/null || { echo "kafka.sh: mvn missing (apt-get install -y maven)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "kafka.sh: resolving kafka_2.13 ${version} from Maven Central into $dest…"
mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/libs" "$dest"
echo "kafka.sh: $(ls "$dest" | wc -l) jars in $dest"
