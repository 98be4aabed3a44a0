# Per-tenant quotas on agent creation and deploy: agents, replicas, CPU (cores), memory (MiB).
# input.quotas: {"agents", "replicas", "cpu", "memory_mb"} (missing key: unlimited),
# input.usage: current totals with the same keys, input.template.resources: per replica
# {"cpu", "memory_mb"}, input.request: {"replicas", "previous_replicas" (deploy of an existing
# agent)}.
package agentgate.rules.quotas

import rego.v1

counted_stage if input.stage in {"create", "deploy"}

new_agents := 1 if {
	input.stage == "create"
} else := 0

added_replicas := object.get(input, ["request", "replicas"], 1) - object.get(input, ["request", "previous_replicas"], 0)

per_replica(key) := object.get(input, ["template", "resources", key], 0)

requested := {
	"agents": new_agents,
	"replicas": added_replicas,
	"cpu": added_replicas * per_replica("cpu"),
	"memory_mb": added_replicas * per_replica("memory_mb"),
}

deny contains msg if {
	counted_stage
	some key, limit in input.quotas
	want := requested[key]
	want > 0
	used := object.get(input, ["usage", key], 0)
	used + want > limit
	msg := sprintf("quota %s exceeded: %v in use + %v requested > %v allowed", [key, used, want, limit])
}
