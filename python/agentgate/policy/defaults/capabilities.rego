# Template capabilities must be on the tenant's allow-list (no list: no restriction).
# input.template.capabilities: [string]; input.tenant.allowed_capabilities: [string] | null.
package agentgate.rules.capabilities

import rego.v1

deny contains msg if {
	is_array(input.tenant.allowed_capabilities)
	some cap in input.template.capabilities
	not cap in input.tenant.allowed_capabilities
	msg := sprintf("capability '%s' is not allowed for tenant '%s'", [cap, input.tenant.id])
}
