# Templates must carry a signature that verified against a key the tenant trusts.
# input.signature: {"verified": bool, "key_id": string|null}; input.tenant.trusted_keys: [key ids].
# A tenant may opt out with input.tenant.allow_unsigned == true.
package agentgate.rules.signature

import rego.v1

exempt if input.tenant.allow_unsigned == true

# A null or missing key id means no signature at all.
signed if is_string(input.signature.key_id)

deny contains "template is not signed" if {
	not exempt
	not signed
}

deny contains msg if {
	not exempt
	signed
	input.signature.verified != true
	msg := sprintf("signature by key '%s' did not verify", [input.signature.key_id])
}

deny contains msg if {
	not exempt
	input.signature.verified == true
	is_array(input.tenant.trusted_keys)
	not input.signature.key_id in input.tenant.trusted_keys
	msg := sprintf("signing key '%s' is not trusted by tenant '%s'", [input.signature.key_id, input.tenant.id])
}
