"""The operators' dashboard: `python -m runtime.web`, on Starlette and uvicorn.

Installed with the optional extra `rsxgen[web]`. Nothing else in the runtime imports this
package, so a worker or the processor never loads Starlette, uvicorn or prometheus_client.
"""
