"""The HTTP API: FastAPI routers over shared services, wrapped by Mangum for Lambda."""
