#!/usr/bin/python3
"""A gRPC client that knows nothing of iot-mesh but what server reflection tells it.

Run with Debian's python3-grpcio and python3-protobuf (C-core grpcio, as
grpcurl-like tools use): `/usr/bin/python3 testing/reflection-client.py < plan.json`.

The plan (JSON on stdin) names servers and the calls to make:

  {"servers": {"signing": "127.0.0.1:50051", ...},
   "probes": {"signing": {"files": ["google/protobuf/timestamp.proto"], "missing_file": "nope.proto"}},
   "steps": [{"id": "login", "server": "signing", "method": "iot.signing.v1.AuthService/Login",
              "request": {"tenant": "...", "email": "...", "password": "..."},
              "metadata": {"authorization": "Bearer ${token}"},
              "save": {"token": "tokens.accessToken"},
              "stream": {"messages": 1, "timeout_s": 10},
              "during": [<steps run while the stream is open, again every repeat_s until it has its messages>],
              "repeat_s": 0.5}]}

For every server it first asks reflection (v1alpha, as older grpcurl and
grpcio do, and v1) for the list of services, resolves each service's file
with its imports into a fresh descriptor pool, and builds every method's
request and response types from that pool. Each step's request is proto3 JSON
turned into the message reflection described; `${name}` in strings is
replaced with values saved by earlier steps. Prints one JSON object: what
reflection answered per server, and each step's response (proto3 JSON), or
its status code and details.

The reflection protocol's own messages are built here by hand with
descriptor_pb2: a client cannot learn them from reflection before it speaks
it; they are the protocol, not the platform's schema.
"""
import json
import re
import sys
import threading
import time

try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
except ImportError as err:  # the jest test checks this first and prints the install command
    sys.stderr.write(f"missing Debian packages ({err}): apt-get update && apt-get install -y python3-grpcio python3-protobuf\n")
    sys.exit(3)

F = descriptor_pb2.FieldDescriptorProto


def message_class(descriptor):
    """The generated class of a descriptor (protobuf 4 has GetMessageClass, 3.x a factory)."""
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)


def reflection_types(package):
    """ServerReflectionRequest/Response of grpc.reflection.<package>, hand-built (same messages in v1 and v1alpha)."""
    file = descriptor_pb2.FileDescriptorProto(name=f"hand-built/{package}/reflection.proto", package=f"grpc.reflection.{package}", syntax="proto3")

    def message(name, *fields):
        m = file.message_type.add(name=name)
        for field in fields:
            m.field.add(**field)
        return m

    def field(name, number, kind, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
        f = {"name": name, "number": number, "type": kind, "label": label, "json_name": re.sub(r"_(\w)", lambda x: x.group(1).upper(), name)}
        if type_name:
            f["type_name"] = f".grpc.reflection.{package}.{type_name}"
        if oneof is not None:
            f["oneof_index"] = oneof
        return f

    request = message(
        "ServerReflectionRequest",
        field("host", 1, F.TYPE_STRING),
        field("file_by_filename", 3, F.TYPE_STRING, oneof=0),
        field("file_containing_symbol", 4, F.TYPE_STRING, oneof=0),
        field("file_containing_extension", 5, F.TYPE_MESSAGE, type_name="ExtensionRequest", oneof=0),
        field("all_extension_numbers_of_type", 6, F.TYPE_STRING, oneof=0),
        field("list_services", 7, F.TYPE_STRING, oneof=0),
    )
    request.oneof_decl.add(name="message_request")
    message("ExtensionRequest", field("containing_type", 1, F.TYPE_STRING), field("extension_number", 2, F.TYPE_INT32))
    response = message(
        "ServerReflectionResponse",
        field("valid_host", 1, F.TYPE_STRING),
        field("original_request", 2, F.TYPE_MESSAGE, type_name="ServerReflectionRequest"),
        field("file_descriptor_response", 4, F.TYPE_MESSAGE, type_name="FileDescriptorResponse", oneof=0),
        field("all_extension_numbers_response", 5, F.TYPE_MESSAGE, type_name="ExtensionNumberResponse", oneof=0),
        field("list_services_response", 6, F.TYPE_MESSAGE, type_name="ListServiceResponse", oneof=0),
        field("error_response", 7, F.TYPE_MESSAGE, type_name="ErrorResponse", oneof=0),
    )
    response.oneof_decl.add(name="message_response")
    message("FileDescriptorResponse", field("file_descriptor_proto", 1, F.TYPE_BYTES, F.LABEL_REPEATED))
    message("ExtensionNumberResponse", field("base_type_name", 1, F.TYPE_STRING), field("extension_number", 2, F.TYPE_INT32, F.LABEL_REPEATED))
    message("ListServiceResponse", field("service", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, type_name="ServiceResponse"))
    message("ServiceResponse", field("name", 1, F.TYPE_STRING))
    message("ErrorResponse", field("error_code", 1, F.TYPE_INT32), field("error_message", 2, F.TYPE_STRING))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    prefix = f"grpc.reflection.{package}."
    return message_class(pool.FindMessageTypeByName(prefix + "ServerReflectionRequest")), message_class(pool.FindMessageTypeByName(prefix + "ServerReflectionResponse"))


class Reflection:
    """One reflection stream per question, as grpcurl does; files are collected into one pool per server."""

    def __init__(self, channel, package):
        self.request_type, self.response_type = reflection_types(package)
        self.call = channel.stream_stream(
            f"/grpc.reflection.{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.response_type.FromString,
        )

    def ask(self, **request):
        responses = self.call(iter([self.request_type(**request)]), timeout=10)
        return next(iter(responses))


class Server:
    """A server as reflection describes it: its services, their methods and message classes."""

    def __init__(self, address):
        self.channel = grpc.insecure_channel(address)
        self.reflection = Reflection(self.channel, "v1alpha")
        self.files = {}  # file name → serialized FileDescriptorProto, as the server sent it
        self.pool = descriptor_pool.DescriptorPool()
        self.added = set()

    def list_services(self, reflection=None):
        answer = (reflection or self.reflection).ask(list_services="*")
        if answer.HasField("error_response"):
            raise RuntimeError(f"list_services: {answer.error_response.error_message}")
        return [s.name for s in answer.list_services_response.service]

    def _collect(self, answer, what):
        if answer.HasField("error_response"):
            raise LookupError(f"{what}: {grpc.StatusCode.NOT_FOUND.name if answer.error_response.error_code == 5 else answer.error_response.error_code}: {answer.error_response.error_message}")
        names = []
        for raw in answer.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            self.files.setdefault(proto.name, raw)
            names.append(proto.name)
        return names

    def _add(self, name):
        """Adds a file to the pool after its imports, asking reflection for any it has not sent."""
        if name in self.added:
            return
        if name not in self.files:
            self._collect(self.reflection.ask(file_by_filename=name), f"file {name}")
        proto = descriptor_pb2.FileDescriptorProto.FromString(self.files[name])
        for dependency in proto.dependency:
            self._add(dependency)
        self.pool.AddSerializedFile(self.files[name])
        self.added.add(name)

    def file_by_filename(self, name):
        names = self._collect(self.reflection.ask(file_by_filename=name), f"file {name}")
        self._add(names[0])
        return names

    def resolve_symbol(self, symbol):
        names = self._collect(self.reflection.ask(file_containing_symbol=symbol), f"symbol {symbol}")
        self._add(names[0])
        return names[0]

    def method(self, path):
        """(kind, request class, response class, stub) of `/pkg.Service/Method`, all from reflection."""
        service_name, method_name = path.lstrip("/").split("/")
        service = self.pool.FindServiceByName(service_name)
        method = service.methods_by_name[method_name]
        request_class, response_class = message_class(method.input_type), message_class(method.output_type)
        streaming = getattr(method, "server_streaming", None)
        if streaming is None:  # protobuf 3.x descriptors lack the flag: read it from the file as served
            for s in descriptor_pb2.FileDescriptorProto.FromString(self.files[service.file.name]).service:
                if s.name == service.name:
                    streaming = next(m.server_streaming for m in s.method if m.name == method_name)
        factory = self.channel.unary_stream if streaming else self.channel.unary_unary
        stub = factory(f"/{service_name}/{method_name}", request_serializer=lambda m: m.SerializeToString(), response_deserializer=response_class.FromString)
        return ("server_stream" if streaming else "unary"), request_class, stub


def describe(server, probes):
    """Everything reflection says about one server: services, methods, probed files, a missing file."""
    out = {"services": server.list_services(), "v1_services": server.list_services(Reflection(server.channel, "v1")), "methods": {}, "errors": {}}
    for service_name in out["services"]:
        try:
            server.resolve_symbol(service_name)
            service = server.pool.FindServiceByName(service_name)
            out["methods"][service_name] = {}
            for method in service.methods:
                # Building both classes proves every type (and every import) resolved.
                message_class(method.input_type)
                message_class(method.output_type)
                out["methods"][service_name][method.name] = [method.input_type.full_name, method.output_type.full_name]
        except Exception as err:  # reported, asserted by the caller
            out["errors"][service_name] = str(err)
    out["files"] = {}
    for name in probes.get("files", []):
        try:
            out["files"][name] = server.file_by_filename(name)
        except Exception as err:
            out["files"][name] = str(err)
    for symbol in probes.get("symbols", []):
        try:
            out["files"][symbol] = server.resolve_symbol(symbol)
        except Exception as err:
            out["files"][symbol] = str(err)
    if "missing_file" in probes:
        try:
            server._collect(server.reflection.ask(file_by_filename=probes["missing_file"]), "file")
            out["missing_file"] = "found"
        except LookupError as err:
            out["missing_file"] = str(err)
    return out


def substitute(value, saved):
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: str(saved[m.group(1)]), value)
    if isinstance(value, list):
        return [substitute(v, saved) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, saved) for k, v in value.items()}
    return value


def pick(document, path):
    for part in path.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def to_json(message):
    return json_format.MessageToDict(message)


def run_step(servers, step, saved):
    server = servers[step["server"]]
    kind, request_class, stub = server.method(step["method"])
    request = json_format.ParseDict(substitute(step.get("request", {}), saved), request_class())
    metadata = [(k, v) for k, v in substitute(step.get("metadata", {}), saved).items()]
    result = {"kind": kind}
    try:
        if kind == "unary":
            response = to_json(stub(request, metadata=metadata, timeout=step.get("timeout_s", 10)))
            result["response"] = response
            for name, path in step.get("save", {}).items():
                saved[name] = pick(response, path)
        else:
            result.update(run_stream(servers, stub, request, metadata, step, saved))
    except grpc.RpcError as err:
        result["code"] = err.code().name
        result["details"] = err.details()
    return result


def run_stream(servers, stub, request, metadata, step, saved):
    """Reads up to N messages of a server stream, running `during` steps meanwhile, then cancels."""
    wanted = step.get("stream", {}).get("messages", 1)
    timeout = step.get("stream", {}).get("timeout_s", 10)
    call = stub(request, metadata=metadata)
    messages, failure = [], {}
    done = threading.Event()

    def read():
        try:
            for message in call:
                messages.append(to_json(message))
                if len(messages) >= wanted:
                    break
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                failure.update(code=err.code().name, details=err.details())
        finally:
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    during = []
    deadline = time.monotonic() + timeout
    while not done.is_set() and time.monotonic() < deadline:
        for inner in step.get("during", []):
            during.append(run_step(servers, inner, saved))
        if not step.get("repeat_s"):
            break
        done.wait(step["repeat_s"])
    done.wait(max(0, deadline - time.monotonic()))
    cancelled = not done.is_set()
    call.cancel()
    done.wait(2)
    out = {"messages": messages, "cancelled_after_timeout": cancelled, **failure}
    if during:
        out["during"] = during
    return out


def main():
    plan = json.load(sys.stdin)
    servers = {name: Server(address) for name, address in plan["servers"].items()}
    report = {"reflection": {}, "steps": {}}
    for name, server in servers.items():
        report["reflection"][name] = describe(server, plan.get("probes", {}).get(name, {}))
    saved = {}
    for step in plan.get("steps", []):
        try:
            report["steps"][step["id"]] = run_step(servers, step, saved)
        except Exception as err:  # a method or type reflection could not describe
            report["steps"][step["id"]] = {"client_error": f"{type(err).__name__}: {err}"}
    for server in servers.values():
        server.channel.close()
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
