module agentgate.local/loadtests/upstream

go 1.22
