"""C++ code generation with Debian's protoc and grpc_cpp_plugin.

Bazel's native proto rules need @com_google_protobuf, a download; a genrule
over the installed compiler needs nothing. Imports resolve against //proto
(e.g. `import "parley/v1/client.proto"`) and /usr/include (well-known types).
"""

def parley_proto_library(name, srcs, deps = [], proto_deps = [], grpc = False):
    """Generates and compiles C++ for .proto files under //proto.

    Args:
      name: the cc_library with the messages (and services when grpc).
      srcs: the .proto files, relative to //proto.
      deps: parley_proto_library targets whose .proto files these import.
      proto_deps: those imported .proto files, relative to //proto.
      grpc: also generate gRPC services, and `<name>_mock` with gmock stubs.
    """
    bases = [s[:-len(".proto")] for s in srcs]
    hdrs = [b + ".pb.h" for b in bases]
    cc_srcs = [b + ".pb.cc" for b in bases]
    mocks = []
    if grpc:
        hdrs += [b + ".grpc.pb.h" for b in bases]
        cc_srcs += [b + ".grpc.pb.cc" for b in bases]
        mocks = [b + "_mock.grpc.pb.h" for b in bases]
    grpc_flags = ""
    if grpc:
        grpc_flags = ("--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin " +
                      "--grpc_out=generate_mock_code=true:$(RULEDIR) ")
    native.genrule(
        name = name + "_gen",
        srcs = srcs + proto_deps,
        outs = hdrs + cc_srcs + mocks,
        cmd = ("/usr/bin/protoc --proto_path=%s " % native.package_name() +
               "--cpp_out=$(RULEDIR) " + grpc_flags +
               " ".join(["$(location %s)" % s for s in srcs])),
    )
    system_deps = ["@system//:protobuf"]
    if grpc:
        system_deps.append("@system//:grpc")
    native.cc_library(
        name = name,
        srcs = cc_srcs,
        hdrs = hdrs,
        # -isystem for the generated headers: Parley's -Werror is not for them.
        includes = ["."],
        copts = ["-w"],
        deps = deps + system_deps,
    )
    if grpc:
        native.cc_library(
            name = name + "_mock",
            testonly = True,
            hdrs = mocks,
            includes = ["."],
            deps = [":" + name, "@system//:gmock"],
        )
