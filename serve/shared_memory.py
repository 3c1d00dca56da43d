"""Triton's system shared memory extension: tensors read from and written to POSIX shared memory objects (/dev/shm).

A client on this host creates an object (`tritonclient.utils.shared_memory.create_shared_memory_region`), registers a
region of it with the server (name, key, offset, byte_size) and then names the region in an input's or a requested
output's parameters (`shared_memory_region`, `shared_memory_offset`, `shared_memory_byte_size`) instead of sending the
data. Both happen in the ingress, where requests are decoded and responses encoded: an input is read from its region
into the request's array while the request is decoded, an output is written into its region while the response is
encoded, and the response then carries the output's datatype and shape but no data, as Triton's does.

What is checked (every failure is a 400 / INVALID_ARGUMENT naming the region or tensor and what was expected, except
an unknown region: 404 / NOT_FOUND, and a name registered twice: ALREADY_EXISTS, as in Triton):

- Only callers on this host, by their connection's address: shared memory is a one-host mechanism, and a caller from
  elsewhere could only name objects of this host that it did not create.
- A key names one object directly under /dev/shm: '/' (any number of them, as `shm_open` allows) and a name without
  '/', not '.' or '..'. The object is looked up relative to /dev/shm without following a symlink (checked before it
  is opened, and opened with O_NOFOLLOW | O_NONBLOCK, then compared with what was checked), must be a regular file, and
  must belong to the caller's own user: the server finds that user from the caller's loopback TCP connection in
  /proc/net/tcp and tcp6, so a caller cannot make the server read or write another user's memory for it.
- At registration, offset + byte_size within the object's real size; for each tensor, its offset + byte size within
  the region; an input's byte size exactly what its shape and datatype need (BYTES: parsed by the binary extension's
  bounded decoder, which must consume it exactly); an output must fit the byte size given for it.
- Caps (serve/settings.py): regions registered at once (`shared_memory_max_regions`, 64) and their total size
  (`shared_memory_max_bytes`, 1 GiB), which also bounds what one request reads from shared memory.
- Regions belong to the caller that registered them: to the bearer token when authentication is on, else to this
  host's (loopback) callers together. Another caller's region does not exist for a caller: status does not list it,
  a request cannot use it, unregister does not touch it, and the same name may be registered in each scope.

A region's object is held open, not mapped: reads and writes are `pread` / `pwrite` on its descriptor, one copy as a
mapping would take. A mapping would let a client crash the ingress with SIGBUS by shrinking the object under it; a
read past the end now just comes up short, and is reported. Unregistering drops the descriptor; a request in flight
that placed an output in the region keeps it open until the output is written (Triton defers unregistering the same
way), then it closes. Regions live in one ingress process: with several ingress replicas a client must stick to one.
"""
import errno
import hashlib
import ipaddress
import os
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import grpc
import numpy as np

from .codecs import decode_raw, element_count, encode_raw
from .datatypes import itemsize
from .errors import InferenceError, InvalidInput

ROOT = "/dev/shm"
REGION, OFFSET, BYTE_SIZE = "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"
PARAMETERS = (REGION, OFFSET, BYTE_SIZE)
MAX_NAME_CHARS = 256
"""Longest region name a caller may choose (names are kept for as long as the region is registered)."""
_NAME_MAX = 255  # bytes in one file name (Linux's NAME_MAX)


class RegionNotFound(InferenceError):
    """The caller has registered no region of that name (404 / NOT_FOUND, Triton's code)."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class RegionExists(InferenceError):
    """The caller has already registered a region of that name (400 / ALREADY_EXISTS, Triton's codes)."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS


@dataclass(frozen=True)
class Caller:
    """Who makes a shared-memory call: whose regions it sees (`scope`) and where its connection comes from."""

    scope: str
    host: str | None
    port: int | None

    @property
    def local(self) -> bool:
        try:
            address = ipaddress.ip_address(self.host or "")
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        return address.is_loopback or bool(mapped and mapped.is_loopback)

    @classmethod
    def of(cls, auth_token: str | None, authorization: str | None, host: str | None, port: int | None) -> "Caller":
        """The caller of a request that passed authentication: with a token configured, its regions are the token's."""
        if auth_token:
            token = (authorization or "").partition(" ")[2].strip()
            return cls("token:" + hashlib.sha256(token.encode()).hexdigest()[:32], host, port)
        return cls("local", host, port)


def grpc_address(peer: str | None) -> tuple[str | None, int | None]:
    """gRPC's peer string as (host, port): 'ipv4:127.0.0.1:51234', 'ipv6:[::1]:51234' (or %5B::1%5D); else no address."""
    kind, _, address = unquote(peer or "").partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None, None
    host, _, port = address.rpartition(":")
    return host.strip("[]") or None, int(port) if port.isdigit() else None


def names_shared_memory(parameters) -> bool:
    """Whether a tensor's parameters (a dict, or a gRPC parameter map) place it in shared memory."""
    return bool(parameters) and any(key in parameters for key in PARAMETERS)


def peer_uid(host: str | None, port: int | None) -> int | None:
    """The user owning the client end of the TCP connection from (host, port), when that end is on this host: Linux
    lists every TCP socket of this network namespace, with its owner, in /proc/net/tcp and tcp6. None when not found."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if port is None:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    wanted = {f"{_proc_hex(address.packed)}:{port:04X}"}
    if mapped:  # an IPv4 client seen through a dual-stack socket: its own socket may be either kind
        wanted.add(f"{_proc_hex(mapped.packed)}:{port:04X}")
    elif address.version == 4:
        wanted.add(f"{_proc_hex(ipaddress.IPv6Address('::ffff:' + str(address)).packed)}:{port:04X}")
    uids = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[1] in wanted and fields[3] == "01" and fields[7].isdigit():  # 01: ESTABLISHED
                uids.add(int(fields[7]))
    return uids.pop() if len(uids) == 1 else None


def _proc_hex(packed: bytes) -> str:
    """An address as /proc/net/tcp* prints it: each 32-bit word in the machine's byte order, in hex."""
    return "".join(f"{int.from_bytes(packed[i:i + 4], sys.byteorder):08X}" for i in range(0, len(packed), 4))


class _Descriptor:
    """An open shared memory object; closed when the last holder (the registry, a request in flight) lets it go."""

    def __init__(self, fd: int):
        self.fd = fd

    def close(self, _close=os.close) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            _close(fd)

    __del__ = close


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    descriptor: _Descriptor

    def status(self) -> dict:
        """Triton's `$system_shared_memory_status_response` entry (and gRPC's RegionStatus fields)."""
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


class SharedMemoryRegistry:
    """The regions registered with this process, by caller scope and name."""

    def __init__(self, max_regions: int = 64, max_bytes: int = 2**30, root: str = ROOT):
        self.max_regions, self.max_bytes, self.root = max_regions, max_bytes, root
        self._regions: dict[tuple[str, str], Region] = {}
        self._lock = threading.Lock()

    def register(self, caller: Caller, name: str, key: str, offset: int, byte_size: int) -> None:
        _require_local(caller)
        _check_name(name)
        object_name = _object_name(name, key)
        for field, value, least in (("offset", offset, 0), ("byte_size", byte_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidInput(f"shared memory region {name!r}: {field} must be an integer of at least {least}, got {value!r}")
        with self._lock:
            self._check_room(caller, name, byte_size)
        descriptor = self._open(caller, name, key, object_name)
        try:
            size = os.fstat(descriptor.fd).st_size
            if offset + byte_size > size:
                raise InvalidInput(
                    f"shared memory region {name!r}: offset {offset} + byte_size {byte_size} runs past the end of {key!r} "
                    f"({size} bytes)"
                )
            with self._lock:
                self._check_room(caller, name, byte_size)  # again: another registration may have come in meanwhile
                self._regions[(caller.scope, name)] = Region(name, key, offset, byte_size, descriptor)
        except BaseException:
            descriptor.close()
            raise

    def unregister(self, caller: Caller, name: str = "") -> None:
        """One region, or every region of the caller when `name` is empty; an unknown name is no error (Triton)."""
        _require_local(caller)
        with self._lock:
            for scoped in [k for k in self._regions if k[0] == caller.scope and (not name or k[1] == name)]:
                del self._regions[scoped]

    def status(self, caller: Caller, name: str = "") -> list[dict]:
        """The caller's regions, or the one named (unknown: NOT_FOUND, as in Triton)."""
        _require_local(caller)
        if name:
            return [self._region(caller, name, f"Unable to find system shared memory region: {name!r}").status()]
        return [region.status() for (scope, _), region in sorted(self._regions.items()) if scope == caller.scope]

    def use(self, caller: Caller) -> "RegionUse":
        """One request's access to its caller's regions."""
        _require_local(caller)
        return RegionUse(self, caller)

    def _check_room(self, caller: Caller, name: str, byte_size: int) -> None:
        if (caller.scope, name) in self._regions:
            raise RegionExists(f"shared memory region {name!r} already in manager; unregister it first")
        if len(self._regions) >= self.max_regions:
            raise InvalidInput(
                f"cannot register shared memory region {name!r}: {len(self._regions)} regions are registered, the "
                f"limit is {self.max_regions} (STREAMSERVE_SHARED_MEMORY_MAX_REGIONS); unregister some first"
            )
        total = sum(region.byte_size for region in self._regions.values())
        if total + byte_size > self.max_bytes:
            raise InvalidInput(
                f"cannot register shared memory region {name!r}: its {byte_size} bytes and the {total} registered "
                f"would pass the limit of {self.max_bytes} bytes (STREAMSERVE_SHARED_MEMORY_MAX_BYTES)"
            )

    def _region(self, caller: Caller, name: str, missing: str) -> Region:
        region = self._regions.get((caller.scope, name))
        if region is None:
            raise RegionNotFound(missing)
        return region

    def _open(self, caller: Caller, name: str, key: str, object_name: str) -> _Descriptor:
        where = f"shared memory region {name!r}: key {key!r}"
        try:
            directory = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise InvalidInput(f"{where}: this server has no shared memory directory {self.root} ({e.strerror})") from None
        try:
            try:
                checked = os.stat(object_name, dir_fd=directory, follow_symlinks=False)
            except FileNotFoundError:
                raise InvalidInput(f"{where}: no such shared memory object in {self.root}; create it before registering") from None
            except OSError as e:
                raise InvalidInput(f"{where}: cannot be looked up in {self.root} ({e.strerror})") from None
            if stat.S_ISLNK(checked.st_mode):
                raise InvalidInput(f"{where} is a symbolic link in {self.root}; register the object itself")
            if not stat.S_ISREG(checked.st_mode):
                raise InvalidInput(f"{where} is not a shared memory object (a regular file in {self.root})")
            uid = peer_uid(caller.host, caller.port)
            if uid is None:
                raise InvalidInput(f"{where}: cannot tell which local user this connection belongs to, so cannot check that the object is its own")
            if checked.st_uid != uid:
                raise InvalidInput(f"{where} belongs to uid {checked.st_uid}, not to the caller (uid {uid}); register objects your own user created")
            try:
                descriptor = _Descriptor(os.open(object_name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory))
            except OSError as e:
                reason = "it was replaced by a symbolic link" if e.errno == errno.ELOOP else e.strerror
                raise InvalidInput(f"{where}: the server cannot open it for reading and writing ({reason})") from None
        finally:
            os.close(directory)
        opened = os.fstat(descriptor.fd)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            descriptor.close()
            raise InvalidInput(f"{where} was replaced while it was being registered; register it again")
        return descriptor


class RegionUse:
    """One request's use of its caller's regions: inputs read, outputs' places checked before the model runs and
    written after it, bytes read counted against the cap."""

    def __init__(self, registry: SharedMemoryRegistry, caller: Caller):
        self.registry, self.caller = registry, caller
        self._read = 0
        self._outputs: dict[str, tuple[Region, int, int]] = {}

    def input(self, tensor: str, datatype: str, shape, parameters) -> np.ndarray:
        """The input's array, read from its region (its declared name, datatype and shape already checked)."""
        region, offset, byte_size = self._place("input", tensor, parameters)
        count = element_count(shape, tensor)
        if datatype != "BYTES" and byte_size != count * itemsize(datatype):
            raise InvalidInput(
                f"input {tensor!r}: shared_memory_byte_size is {byte_size}, but {count} {datatype} elements of shape "
                f"{list(shape)} take {count * itemsize(datatype)} bytes"
            )
        self._read += byte_size
        if self._read > self.registry.max_bytes:
            raise InvalidInput(
                f"input {tensor!r}: this request's inputs read {self._read} bytes from shared memory, over the limit of "
                f"{self.registry.max_bytes} (STREAMSERVE_SHARED_MEMORY_MAX_BYTES)"
            )
        return decode_raw(_read(region, offset, byte_size), datatype, shape, tensor)

    def place_output(self, tensor: str, parameters) -> None:
        """Checks where a requested output goes (before the model runs); `write_output` puts it there."""
        self._outputs[tensor] = self._place("output", tensor, parameters)

    def write_output(self, tensor: str, array: np.ndarray) -> bool:
        """Writes the output into its region; False when it was not placed in shared memory."""
        place = self._outputs.get(tensor)
        if place is None:
            return False
        region, offset, byte_size = place
        if array.dtype.kind in "OSU":
            data = memoryview(encode_raw(array))
        else:
            data = memoryview(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))).cast("B")
        if data.nbytes > byte_size:
            raise InvalidInput(
                f"output {tensor!r}: its {data.nbytes} bytes do not fit in the {byte_size} bytes given by "
                f"shared_memory_byte_size in region {region.name!r}"
            )
        start = region.offset + offset
        size = os.fstat(region.descriptor.fd).st_size
        if start + data.nbytes > size:
            raise InvalidInput(_shrunk(region, size))
        written = 0
        while written < data.nbytes:
            written += os.pwrite(region.descriptor.fd, data[written:], start + written)
        return True

    def _place(self, kind: str, tensor: str, parameters) -> tuple[Region, int, int]:
        name, offset, byte_size = (parameters.get(REGION), parameters.get(OFFSET, 0), parameters.get(BYTE_SIZE))
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"{kind} {tensor!r}: parameter {REGION} must name a registered region, got {name!r}")
        if byte_size is None:
            raise InvalidInput(f"{kind} {tensor!r}: parameter {REGION} needs {BYTE_SIZE} too")
        for parameter, value in ((OFFSET, offset), (BYTE_SIZE, byte_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{kind} {tensor!r}: parameter {parameter} must be a non-negative integer, got {value!r}")
        region = self.registry._region(self.caller, name, f"{kind} {tensor!r}: Unable to find shared memory region: {name!r}")
        if offset >= region.byte_size or offset + byte_size > region.byte_size:
            raise InvalidInput(
                f"{kind} {tensor!r}: {OFFSET} {offset} + {BYTE_SIZE} {byte_size} is outside region {name!r} "
                f"({region.byte_size} bytes)"
            )
        return region, offset, byte_size


def offered(registry: SharedMemoryRegistry | None) -> SharedMemoryRegistry:
    """The process's registry; a data plane without one (unit tests, tools) does not offer the extension."""
    if registry is None:
        raise InvalidInput("system shared memory is not offered by this server")
    return registry


def cuda_status(name: str = "") -> list:
    """CUDA shared memory is not offered (no GPU memory is shared with clients): nothing is ever registered."""
    if name:
        raise RegionNotFound(f"Unable to find cuda shared memory region: {name!r}")
    return []


def refuse_cuda(name: str) -> None:
    raise InvalidInput(f"failed to register CUDA shared memory region {name!r}: CUDA shared memory is not supported by this server; use system shared memory")


def _read(region: Region, offset: int, byte_size: int) -> bytearray:
    buffer = bytearray(byte_size)
    view, done, start = memoryview(buffer), 0, region.offset + offset
    while done < byte_size:
        got = os.preadv(region.descriptor.fd, [view[done:]], start + done)
        if not got:
            raise InvalidInput(_shrunk(region, os.fstat(region.descriptor.fd).st_size))
        done += got
    return buffer


def _shrunk(region: Region, size: int) -> str:
    return (
        f"shared memory region {region.name!r}: its object {region.key!r} now has {size} bytes, less than the "
        f"{region.offset + region.byte_size} it had when registered; register it again"
    )


def _require_local(caller: Caller) -> None:
    if not caller.local:
        where = caller.host or "an address the server cannot see (gRPC arrives through the TLS terminator)"
        raise InvalidInput(f"system shared memory is only for clients on this host; this call came from {where}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidInput(f"shared memory region name {name!r}: 1 to {MAX_NAME_CHARS} printable characters expected")


def _object_name(name: str, key: str) -> str:
    """The object's file name in /dev/shm: the key without its leading '/'s (shm_open's rule)."""
    object_name = key.lstrip("/") if isinstance(key, str) else ""
    if (
        not object_name or "/" in object_name or object_name in (".", "..") or not object_name.isprintable()
        or len(object_name.encode()) > _NAME_MAX
    ):
        raise InvalidInput(
            f"shared memory region {name!r}: key {key!r} must be '/' and the name of a shared memory object "
            f"(no further '/', not '.' or '..', printable, at most {_NAME_MAX} bytes)"
        )
    return object_name
