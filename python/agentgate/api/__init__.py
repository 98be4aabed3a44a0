"""HTTP APIs served with Starlette: the control-plane REST API (`app`, `routes/`) and the admin
listener (`admin`) that serves it next to the gateway's probes, metrics, config and health views.
"""
