#!/usr/bin/env python3
"""A Python grpcio client of the mesh without generated code: messages come
from the descriptor set `npm run generate` writes (gen/iot.binpb).

    python3 scripts/grpc-python-example.py 127.0.0.1:50051 <tenant> <email> <password>

logs in with AuthService/Login and prints WhoAmI as proto3 JSON. Needs grpcio
and protobuf (Debian: apt-get install python3-grpcio python3-protobuf).
"""
import os, sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
try:
    from google.protobuf.message_factory import GetMessageClass  # protobuf >= 4.21
except ImportError:  # Debian bookworm's python3-protobuf 3.21
    from google.protobuf.message_factory import MessageFactory
    GetMessageClass = MessageFactory().GetPrototype

fds = descriptor_pb2.FileDescriptorSet.FromString(open(os.path.join(os.path.dirname(__file__), "..", "gen", "iot.binpb"), "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in fds.file:
    pool.Add(f)

def unary(channel, method, request_json, metadata=()):
    service_name, method_name = method.rsplit("/", 1)
    m = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    Request, Response = GetMessageClass(m.input_type), GetMessageClass(m.output_type)
    call = channel.unary_unary(f"/{service_name}/{method_name}", request_serializer=lambda r: r.SerializeToString(), response_deserializer=Response.FromString)
    return json_format.MessageToDict(call(json_format.ParseDict(request_json, Request()), metadata=metadata))

channel = grpc.insecure_channel(sys.argv[1])
login = unary(channel, "iot.signing.v1.AuthService/Login", {"tenant": sys.argv[2], "email": sys.argv[3], "password": sys.argv[4]})
auth = (("authorization", "Bearer " + login["tokens"]["accessToken"]),)
print(unary(channel, "iot.signing.v1.AuthService/WhoAmI", {}, auth))
