"""A gRPC client of agola's public API in another language (Python grpcio), generated from
proto/ at test time. Creates a user and a project through the gateway, then lists the
project's runs; prints one JSON line with what it saw.

usage: client.py GENERATED_DIR GATEWAY_ADDR ADMIN_TOKEN USERNAME
"""
import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from agola.common.v1 import common_pb2  # noqa: E402
from agola.gateway.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402

addr, token, username = sys.argv[2], sys.argv[3], sys.argv[4]
metadata = [("authorization", f"token {token}")]
channel = grpc.insecure_channel(addr)

users = gateway_pb2_grpc.UserServiceStub(channel)
user = users.CreateUser(gateway_pb2.CreateUserRequest(username=username), metadata=metadata).user

projects = gateway_pb2_grpc.ProjectServiceStub(channel)
project = projects.CreateProject(
    gateway_pb2.CreateProjectRequest(
        name="pyproject",
        parent_ref=f"user/{username}",
        visibility=common_pb2.VISIBILITY_PUBLIC,
        repository_url="https://example.invalid/repo.git",
    ),
    metadata=metadata,
).project

runs = gateway_pb2_grpc.RunServiceStub(channel)
listed = runs.ListRuns(gateway_pb2.ListRunsRequest(project_ref=project.id), metadata=metadata)

# A missing object is a gRPC NOT_FOUND with the agola error code in the metadata.
try:
    projects.GetProject(gateway_pb2.GetProjectRequest(project_ref="user/nobody/nothing"), metadata=metadata)
    missing = "found"
except grpc.RpcError as e:
    missing = e.code().name

print(json.dumps({
    "user": user.name,
    "project_path": project.path,
    "runs": len(listed.runs),
    "missing": missing,
}))
