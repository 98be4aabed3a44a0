# The decision the gateway asks for: every `deny` message of every package under
# `agentgate.rules` (shipped defaults and tenant policies alike), named by its package.
package agentgate

import rego.v1

deny contains {"rule": name, "msg": msg} if {
	msg := data.agentgate.rules[name].deny[_]
}

decision := {"allow": count(deny) == 0, "deny": deny}
