// The libbpf loader for meshport's BPF programs (bpf/meshport.bpf.c): load with config, attach/detach, pins, stats, probes.
#include "addon.h"
#include "fd.h"

#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <bpf/libbpf_version.h>

// libbpf 0.x returns error pointers (not NULL + errno) from the open functions and mixes -1/errno with -errno
// returns: every error path below assumes the 1.x conventions, so an older libbpf is refused at build time.
#if !defined(LIBBPF_MAJOR_VERSION) || LIBBPF_MAJOR_VERSION < 1
#error "meshport's BPF loader needs libbpf >= 1.0 (install libbpf-dev 1.x): 0.x error conventions would crash it"
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../bpf/meshport.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80  // linux/netfilter_ipv4.h, which does not mix with glibc's netinet headers
#endif
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

namespace meshport {
namespace {

constexpr const char *kObjectFile = "meshport.bpf.o";
constexpr const char *kBpffsRoot = "/sys/fs/bpf";

// ---- libbpf's log: kept so a failed load can say why (the verifier log arrives through this callback). ----

// Per thread, like the loaded object below: Node runs each environment (the main one, each worker_thread) on its
// own thread, and libbpf calls the print callback on the thread that called into it.
thread_local std::string g_libbpf_log;

int CaptureLibbpfLog(enum libbpf_print_level level, const char *format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  va_list again;
  va_copy(again, args);
  int n = std::vsnprintf(nullptr, 0, format, again);  // a verifier log arrives as one long message
  va_end(again);
  if (n > 0) {
    std::string line(static_cast<size_t>(n) + 1, '\0');
    std::vsnprintf(line.data(), line.size(), format, args);
    line.resize(static_cast<size_t>(n));
    g_libbpf_log += line;
  }
  constexpr size_t kKeep = 8192;  // the end of a verifier log is the part that names the failure
  if (g_libbpf_log.size() > kKeep) g_libbpf_log.erase(0, g_libbpf_log.size() - kKeep);
  return 0;
}

// ThrowErrno, with libbpf's recent log attached as `libbpfLog` when there is one.
[[noreturn]] void ThrowBpfErrno(Napi::Env env, int err, const char *syscall) {
  if (err < 0) err = -err;  // libbpf returns -errno
  if (err == 0) err = EINVAL;
  try {
    ThrowErrno(env, err, syscall);
  } catch (Napi::Error &error) {
    if (!g_libbpf_log.empty()) error.Set("libbpfLog", Napi::String::New(env, g_libbpf_log));
    throw;
  }
}

// An EINVAL error for a bad argument or a pin that is not what it should be, with a message that says which and why.
[[noreturn]] void ThrowInvalid(Napi::Env env, const char *what, const std::string &why, const std::string &path = "") {
  try {
    ThrowErrno(env, EINVAL, what);
  } catch (Napi::Error &error) {
    error.Set("message", Napi::String::New(env, std::string(what) + ": " + why));
    if (!path.empty()) error.Set("path", Napi::String::New(env, path));
    throw;
  }
}

// ---- small RAII pieces (the fd owner is fd.h's Fd) ----

struct ObjectCloser {
  void operator()(bpf_object *obj) const { bpf_object__close(obj); }
};
using ObjectPtr = std::unique_ptr<bpf_object, ObjectCloser>;

// ---- the five programs ----

struct ProgramSpec {
  const char *name;        // the name the JS API uses, and the link's pin name
  const char *bpf_name;    // the function name in meshport.bpf.c
  bpf_attach_type type;
  bool on_cgroup;          // false: attached to the SOCKHASH
};

constexpr ProgramSpec kPrograms[] = {
    {"connect4", "meshport_connect4", BPF_CGROUP_INET4_CONNECT, true},
    {"connect6", "meshport_connect6", BPF_CGROUP_INET6_CONNECT, true},  // IPv4-mapped connects of dual-stack sockets
    {"sockops", "meshport_sockops", BPF_CGROUP_SOCK_OPS, true},
    {"getsockopt", "meshport_getsockopt", BPF_CGROUP_GETSOCKOPT, true},
    {"sk_msg", "meshport_sk_msg", BPF_SK_MSG_VERDICT, false},
};

// The rewrite programs (connect4, and connect6 where built) send connections to the capture port; the others
// record and answer their original destination. The rewrite is attached last and detached first, so there is never
// a moment where a connection is rewritten and nothing answers SO_ORIGINAL_DST for it.
bool IsRewrite(const char *name) { return std::strncmp(name, "connect", 7) == 0; }

const ProgramSpec *FindSpec(const std::string &name) {
  for (const auto &spec : kPrograms)
    if (name == spec.name) return &spec;
  return nullptr;
}

// One program attached somewhere. Links are the default; sk_msg falls back to a plain prog attach on kernels
// older than 6.10, which had no sockmap links.
struct Attachment {
  std::string cgroup_path;
  const ProgramSpec *spec = nullptr;
  Fd link;
  bool prog_attached = false;  // sk_msg fallback: detach with bpf_prog_detach2(prog, sockhash)
  std::string pin_path;        // empty when not pinned
  Fd replaced_prog;            // during bpfAttach only: the program a bpf_link_update replaced (rollback puts it back)
  bool kept = false;           // during bpfAttach only: a pinned link left as it was (rollback leaves it too)
};

struct LoadedObject {
  ObjectPtr obj;
  std::vector<std::unique_ptr<Attachment>> attachments;
  std::vector<std::string> map_pins;  // pinned map paths, removed when the last attachment of their dir goes
};

// One loaded object per Node environment. thread_local because each environment has its own thread; the
// environment's cleanup hook (InitBpf) unloads it when a worker_thread ends, so a worker neither sees nor unloads
// the main thread's object.
thread_local std::unique_ptr<LoadedObject> g_loaded;

// ---- helpers ----

std::string GetString(const Napi::Object &obj, const char *key, const std::string &fallback) {
  if (!obj.Has(key)) return fallback;
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) ThrowArgTypeError(obj.Env(), key, "a string");
  return v.As<Napi::String>().Utf8Value();
}

uint32_t GetU32(const Napi::Object &obj, const char *key, uint32_t fallback, uint32_t max) {
  if (!obj.Has(key)) return fallback;
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  // CheckInteger refuses NaN, ±Infinity and fractions before any cast (casting them is undefined behavior).
  return static_cast<uint32_t>(CheckInteger(obj.Env(), v, key, 0, max));
}

std::vector<uint16_t> GetPorts(const Napi::Object &obj, const char *key) {
  std::vector<uint16_t> ports;
  if (!obj.Has(key)) return ports;
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return ports;
  if (!v.IsArray()) ThrowArgTypeError(obj.Env(), key, "an array of ports");
  Napi::Array arr = v.As<Napi::Array>();
  if (arr.Length() > MESHPORT_MAX_PORTS) {
    ThrowArgRangeError(obj.Env(), std::string(key) + ".length", "at most " + std::to_string(MESHPORT_MAX_PORTS));
  }
  for (uint32_t i = 0; i < arr.Length(); i++) {
    std::string name = std::string(key) + "[" + std::to_string(i) + "]";
    ports.push_back(static_cast<uint16_t>(CheckInteger(obj.Env(), arr.Get(i), name, 1, 65535)));
  }
  return ports;
}

bool IsBpffs(const std::string &path) {
  struct statfs st;
  return statfs(path.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
}

int MkdirP(const std::string &path, mode_t mode) {
  std::string partial;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') partial = "";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial += "/" + part;
    if (mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) return errno;
  }
  return 0;
}

// Mounts bpffs at /sys/fs/bpf when it is not there; returns true when this call mounted it.
bool EnsureBpffs(Napi::Env env) {
  if (IsBpffs(kBpffsRoot)) return false;
  if (int err = MkdirP(kBpffsRoot, 0755)) ThrowErrno(env, err, "mkdir");
  if (mount("bpffs", kBpffsRoot, "bpf", 0, "mode=0700") != 0) ThrowErrno(env, errno, "mount");
  return true;
}

// Pin directories must be absolute: a relative one would be resolved against the cwd by some calls and against /
// by MkdirP, so the pins would not be where the caller looks.
void CheckPinDir(Napi::Env env, const std::string &pin_dir) {
  if (!pin_dir.empty() && pin_dir[0] != '/') ThrowInvalid(env, "pinDir", "must be an absolute path on a bpffs, got '" + pin_dir + "'", pin_dir);
}

void PreparePinDir(Napi::Env env, const std::string &pin_dir) {
  if (pin_dir.compare(0, std::strlen(kBpffsRoot), kBpffsRoot) == 0) EnsureBpffs(env);
  if (int err = MkdirP(pin_dir, 0700)) ThrowErrno(env, err, "mkdir");
  if (!IsBpffs(pin_dir)) ThrowErrno(env, EINVAL, "statfs");  // pins only live on a bpffs
}

// Removes a pin directory once empty, and its parent when that is the (now empty) meshport root.
void RemovePinDirIfEmpty(const std::string &pin_dir) {
  if (rmdir(pin_dir.c_str()) != 0) return;
  auto slash = pin_dir.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string parent = pin_dir.substr(0, slash);
  if (parent.size() >= 9 && parent.compare(parent.size() - 9, 9, "/meshport") == 0) rmdir(parent.c_str());
}

void SetConfig(Napi::Env env, bpf_object *obj, const meshport_config &cfg) {
  bpf_map *rodata = nullptr;
  bpf_map *map;
  bpf_object__for_each_map(map, obj) {
    const char *name = bpf_map__name(map);
    if (bpf_map__is_internal(map) && std::strstr(name, ".rodata") != nullptr &&
        std::strstr(name, ".rodata.") == nullptr) {
      rodata = map;
    }
  }
  btf *object_btf = bpf_object__btf(obj);
  if (rodata == nullptr || object_btf == nullptr) ThrowBpfErrno(env, ENOENT, "bpf_object__find_map_by_name");
  int sec_id = btf__find_by_name_kind(object_btf, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) ThrowBpfErrno(env, ENOENT, "btf__find_by_name_kind");
  const btf_type *sec = btf__type_by_id(object_btf, sec_id);
  const btf_var_secinfo *vars = btf_var_secinfos(sec);
  for (unsigned i = 0; i < btf_vlen(sec); i++) {
    const btf_type *var = btf__type_by_id(object_btf, vars[i].type);
    if (std::strcmp(btf__name_by_offset(object_btf, var->name_off), "meshport_cfg") != 0) continue;
    size_t size = 0;
    // libbpf 1.1 returns the pre-load image const; it is the same writable mmap skeletons write through.
    auto *image = static_cast<uint8_t *>(const_cast<void *>(bpf_map__initial_value(rodata, &size)));
    if (image == nullptr || vars[i].size != sizeof(cfg) || vars[i].offset + sizeof(cfg) > size)
      ThrowBpfErrno(env, EINVAL, "bpf_map__initial_value");
    std::memcpy(image + vars[i].offset, &cfg, sizeof(cfg));
    return;
  }
  ThrowBpfErrno(env, ENOENT, "btf_var_secinfos");
}

ObjectPtr OpenObject(Napi::Env env, const std::string &object_dir) {
  std::string path = object_dir + "/" + kObjectFile;
  g_libbpf_log.clear();
  bpf_object *obj = bpf_object__open_file(path.c_str(), nullptr);  // libbpf 1.x: NULL and errno on failure
  if (obj == nullptr) {
    int err = errno;
    try {
      ThrowBpfErrno(env, err, "bpf_object__open_file");
    } catch (Napi::Error &error) {
      error.Set("message", Napi::String::New(env, "bpf_object__open_file failed: " + path + ": " + std::strerror(err == 0 ? EINVAL : err)));
      error.Set("path", Napi::String::New(env, path));
      throw;
    }
  }
  return ObjectPtr(obj);
}

// The kernel's view of a map or link fd; false (errno set) when it cannot be read.
bool MapInfo(int fd, bpf_map_info *info) {
  std::memset(info, 0, sizeof(*info));
  __u32 len = sizeof(*info);
  return bpf_obj_get_info_by_fd(fd, info, &len) == 0;
}

int ProgramFd(bpf_object *obj, const ProgramSpec &spec) {
  bpf_program *prog = bpf_object__find_program_by_name(obj, spec.bpf_name);
  return prog == nullptr ? -ENOENT : bpf_program__fd(prog);
}

int MapFd(bpf_object *obj, const char *name) {
  bpf_map *map = bpf_object__find_map_by_name(obj, name);
  return map == nullptr ? -ENOENT : bpf_map__fd(map);
}

// Attaches one program; on failure returns -errno and the syscall name through `failed`.
int AttachOne(bpf_object *obj, const ProgramSpec &spec, int cgroup_fd, Attachment &out, const char **failed) {
  int prog_fd = ProgramFd(obj, spec);
  if (prog_fd < 0) { *failed = "bpf_object__find_program_by_name"; return prog_fd < -1 ? prog_fd : -ENOENT; }
  int target_fd = cgroup_fd;
  if (!spec.on_cgroup) {
    target_fd = MapFd(obj, "sock_by_tuple");
    if (target_fd < 0) { *failed = "bpf_object__find_map_by_name"; return -ENOENT; }
  }
  int link_fd = bpf_link_create(prog_fd, target_fd, spec.type, nullptr);
  if (link_fd >= 0) {
    out.link = Fd(link_fd);
    return 0;
  }
  int err = -errno;
  if (!spec.on_cgroup && (err == -EINVAL || err == -EOPNOTSUPP)) {
    if (bpf_prog_attach(prog_fd, target_fd, spec.type, 0) == 0) {
      out.prog_attached = true;
      return 0;
    }
    err = -errno;
    *failed = "bpf_prog_attach";
    return err;
  }
  *failed = "bpf_link_create";
  return err;
}

// Whether the program running in a pinned link is the one this object would put there: the same instructions (tag),
// the same maps (taken over with reuseMapsFrom) and the same config (.rodata contents). Then re-apply keeps it.
bool SameProgram(bpf_object *obj, const ProgramSpec &spec, __u32 old_prog_id) {
  int new_fd = ProgramFd(obj, spec);
  Fd old_fd(bpf_prog_get_fd_by_id(old_prog_id));
  if (new_fd < 0 || old_fd.get() < 0) return false;
  auto info_of = [](int fd, bpf_prog_info *info, std::vector<__u32> *maps) {
    std::memset(info, 0, sizeof(*info));
    __u32 len = sizeof(*info);
    if (bpf_obj_get_info_by_fd(fd, info, &len) != 0) return false;
    maps->assign(info->nr_map_ids, 0);
    __u32 n = info->nr_map_ids;
    std::memset(info, 0, sizeof(*info));
    info->nr_map_ids = n;
    info->map_ids = reinterpret_cast<__u64>(maps->data());
    len = sizeof(*info);
    return bpf_obj_get_info_by_fd(fd, info, &len) == 0;
  };
  bpf_prog_info old_info, new_info;
  std::vector<__u32> old_maps, new_maps;
  if (!info_of(old_fd.get(), &old_info, &old_maps) || !info_of(new_fd, &new_info, &new_maps)) return false;
  if (std::memcmp(old_info.tag, new_info.tag, sizeof(old_info.tag)) != 0 || old_maps.size() != new_maps.size()) return false;
  // Maps in order; the one pair that may differ is the .rodata: compare its contents.
  for (size_t i = 0; i < old_maps.size(); i++) {
    if (old_maps[i] == new_maps[i]) continue;
    Fd a(bpf_map_get_fd_by_id(old_maps[i])), b(bpf_map_get_fd_by_id(new_maps[i]));
    bpf_map_info ai{}, bi{};
    if (a.get() < 0 || b.get() < 0 || !MapInfo(a.get(), &ai) || !MapInfo(b.get(), &bi)) return false;
    auto is_rodata = [](const bpf_map_info &m) { return std::strstr(m.name, ".rodata") != nullptr; };
    if (!is_rodata(ai) || !is_rodata(bi) || ai.value_size != bi.value_size || ai.max_entries != 1) return false;
    std::vector<unsigned char> va(ai.value_size), vb(bi.value_size);
    __u32 zero = 0;
    if (bpf_map_lookup_elem(a.get(), &zero, va.data()) != 0 || bpf_map_lookup_elem(b.get(), &zero, vb.data()) != 0) return false;
    if (va != vb) return false;
  }
  return true;
}

// Whether a link is sk_msg's sockmap link (Linux 6.10+) on this object's SOCKHASH. The uapi headers the addon builds
// against may predate sockmap links, so the link type's number and its info (the union member `sockmap`, {map_id,
// attach_type}, which starts where every member of the union does) are spelled out here.
bool IsOurSockmapLink(bpf_object *obj, const ProgramSpec &spec, const bpf_link_info &info) {
  constexpr __u32 kLinkTypeSockmap = 14;  // BPF_LINK_TYPE_SOCKMAP
  struct {
    __u32 map_id;
    __u32 attach_type;
  } sockmap;
  static_assert(sizeof(sockmap) <= sizeof(info.raw_tracepoint), "the link info union holds the sockmap member");
  std::memcpy(&sockmap, &info.raw_tracepoint, sizeof(sockmap));
  int map_fd = MapFd(obj, "sock_by_tuple");
  bpf_map_info map{};
  return info.type == kLinkTypeSockmap && sockmap.attach_type == static_cast<__u32>(spec.type) && map_fd >= 0 &&
         MapInfo(map_fd, &map) && map.id == sockmap.map_id;
}

// Replaces the program of the link pinned at `path` with this object's, atomically (bpf_link_update): no moment with
// no program or two. Only a cgroup link of this cgroup and attach type, or sk_msg's sockmap link on the SOCKHASH this
// object uses (taken over with reuseMapsFrom), is updated; *updated is false (nothing done) when there is no such pin
// or it is something else, which the caller then detaches and replaces. A link is bound to its SOCKHASH: when the new
// object has a fresh one (another layout), sk_msg is detached and attached again. A pre-6.10 prog attach is never
// pinned: AttachOne's bpf_prog_attach to the taken-over SOCKHASH replaces its program in one xchg in the kernel.
// Returns 1 (and *updated) when the link already runs the same program (SameProgram), 0 when updated, else -errno.
int UpdatePinnedLink(bpf_object *obj, const ProgramSpec &spec, int cgroup_fd, const std::string &path, Attachment &out,
                     bool *updated, const char **failed) {
  *updated = false;
  Fd link(bpf_obj_get(path.c_str()));
  if (link.get() < 0) return 0;  // no pin (or not a BPF object): a fresh attach
  bpf_link_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0) return 0;  // not a link
  if (spec.on_cgroup) {
    struct stat st{};
    if (fstat(cgroup_fd, &st) != 0) { *failed = "fstat"; return -errno; }
    if (info.type != BPF_LINK_TYPE_CGROUP || info.cgroup.cgroup_id != st.st_ino || info.cgroup.attach_type != spec.type) return 0;
  } else if (!IsOurSockmapLink(obj, spec, info)) {
    return 0;
  }
  int prog_fd = ProgramFd(obj, spec);
  if (prog_fd < 0) { *failed = "bpf_object__find_program_by_name"; return prog_fd < -1 ? prog_fd : -ENOENT; }
  if (SameProgram(obj, spec, info.prog_id)) {
    // An identical re-apply: the link keeps its program; nothing changes.
    out.link = std::move(link);
    out.pin_path = path;
    out.kept = true;
    *updated = true;
    return 1;
  }
  Fd previous(bpf_prog_get_fd_by_id(info.prog_id));
  if (bpf_link_update(link.get(), prog_fd, nullptr) != 0) { *failed = "bpf_link_update"; return -errno; }
  out.link = std::move(link);
  out.pin_path = path;
  out.replaced_prog = std::move(previous);
  *updated = true;
  return 0;
}

// Gives this object's maps the pinned maps of `pin_dir` where their shape matches (before bpf_object__load), so
// the programs that replace pinned ones by bpf_link_update share the old programs' records: a connection hooked by
// the old connect4 is answered by the new getsockopt. A map of another shape (another version) starts fresh.
void ReusePinnedMaps(Napi::Env env, bpf_object *obj, const std::string &pin_dir) {
  bpf_map *map;
  bpf_object__for_each_map(map, obj) {
    if (bpf_map__is_internal(map)) continue;
    Fd pinned(bpf_obj_get((pin_dir + "/" + bpf_map__name(map)).c_str()));
    bpf_map_info info{};
    if (pinned.get() < 0 || !MapInfo(pinned.get(), &info)) continue;
    if (info.type != static_cast<__u32>(bpf_map__type(map)) || info.key_size != bpf_map__key_size(map) ||
        info.value_size != bpf_map__value_size(map) || info.max_entries != bpf_map__max_entries(map) ||
        info.map_flags != bpf_map__map_flags(map))
      continue;
    if (int err = bpf_map__reuse_fd(map, pinned.get())) ThrowBpfErrno(env, err, "bpf_map__reuse_fd");
  }
}

// Undoes one attachment: the kernel side first, then the pin. Returns -errno of the first failure, 0 if none.
int DetachOne(bpf_object *obj, Attachment &a) {
  int result = 0;
  if (a.link.get() >= 0) {
    // Explicit detach, because a pin or a forked child may hold the link open beyond this fd.
    if (bpf_link_detach(a.link.get()) != 0 && errno != ENOLINK) result = -errno;
    a.link.reset();
  }
  if (a.prog_attached) {
    int prog_fd = ProgramFd(obj, *a.spec);
    int map_fd = MapFd(obj, "sock_by_tuple");
    if (bpf_prog_detach2(prog_fd, map_fd, a.spec->type) != 0 && errno != ENOENT && result == 0) result = -errno;
    a.prog_attached = false;
  }
  if (!a.pin_path.empty()) {
    if (unlink(a.pin_path.c_str()) != 0 && errno != ENOENT && result == 0) result = -errno;
    a.pin_path.clear();
  }
  return result;
}

void SetSockmapEnabled(bpf_object *obj, bool enabled) {
  int fd = MapFd(obj, "ctl");
  if (fd < 0) return;
  __u32 zero = 0;
  meshport_ctl value{};
  value.sockmap_enabled = enabled ? 1 : 0;
  bpf_map_update_elem(fd, &zero, &value, BPF_ANY);
}

bool AnySkMsg() {
  if (!g_loaded) return false;
  for (auto &a : g_loaded->attachments)
    if (std::strcmp(a->spec->name, "sk_msg") == 0) return true;
  return false;
}

std::string DirOf(const std::string &path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// ---- JS functions ----

// bpfLoad({objectDir, config}): opens meshport.bpf.o, writes the config into .rodata, loads every program.
Napi::Value BpfLoad(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowArgTypeError(env, "options", "an object");
  Napi::Object options = info[0].As<Napi::Object>();
  if (g_loaded) ThrowErrno(env, EBUSY, "bpfLoad");
  std::string object_dir = GetString(options, "objectDir", "");
  if (object_dir.empty()) ThrowArgTypeError(env, "objectDir", "a non-empty string");

  meshport_config cfg{};
  Napi::Object config = Napi::Object::New(env);
  if (options.Has("config") && options.Get("config").IsObject()) config = options.Get("config").As<Napi::Object>();
  std::string capture_address = GetString(config, "captureAddress", "127.0.0.1");
  in_addr capture_ip{};
  if (inet_pton(AF_INET, capture_address.c_str(), &capture_ip) != 1) ThrowArgTypeError(env, "captureAddress", "a numeric IPv4 address");
  cfg.capture_ip4 = capture_ip.s_addr;
  // Where connect6 sends native IPv6 connects. "::" (no address) and an IPv4-mapped one (connected over IPv4, so
  // answered as IPv4) cannot hold an IPv6 capture listener.
  std::string capture_address6 = GetString(config, "captureAddress6", "::1");
  in6_addr capture_ip6{};
  if (inet_pton(AF_INET6, capture_address6.c_str(), &capture_ip6) != 1 || IN6_IS_ADDR_UNSPECIFIED(&capture_ip6) ||
      IN6_IS_ADDR_V4MAPPED(&capture_ip6)) {
    ThrowArgTypeError(env, "captureAddress6", "a numeric IPv6 address, not :: or IPv4-mapped");
  }
  std::memcpy(cfg.capture_ip6, &capture_ip6, sizeof(cfg.capture_ip6));
  cfg.capture_port = static_cast<__u16>(GetU32(config, "capturePort", 15001, 65535));
  if (cfg.capture_port == 0) ThrowArgRangeError(env, "capturePort", "an integer from 1 to 65535");
  cfg.sidecar_uid = GetU32(config, "sidecarUid", 1337, 0xffffffffu);
  std::vector<uint16_t> include = GetPorts(config, "includePorts");
  std::vector<uint16_t> exclude = GetPorts(config, "excludePorts");
  cfg.include_count = static_cast<__u16>(include.size());
  cfg.exclude_count = static_cast<__u16>(exclude.size());
  std::copy(include.begin(), include.end(), cfg.include_ports);
  std::copy(exclude.begin(), exclude.end(), cfg.exclude_ports);

  // The SOCKHASH's size; configurable so a test can fill it (a full SOCKHASH is counted as sockmapFailed).
  uint32_t sockmap_max = GetU32(options, "sockmapMaxEntries", 0, 1u << 24);

  // reuseMapsFrom: a pin directory whose links the coming bpfAttach replaces in place (see ReusePinnedMaps).
  std::string reuse_dir = GetString(options, "reuseMapsFrom", "");
  CheckPinDir(env, reuse_dir);

  ObjectPtr obj = OpenObject(env, object_dir);
  SetConfig(env, obj.get(), cfg);
  if (sockmap_max != 0) {
    bpf_map *sockhash = bpf_object__find_map_by_name(obj.get(), "sock_by_tuple");
    if (sockhash == nullptr) ThrowBpfErrno(env, ENOENT, "bpf_object__find_map_by_name");
    if (int err = bpf_map__set_max_entries(sockhash, sockmap_max)) ThrowBpfErrno(env, err, "bpf_map__set_max_entries");
  }
  if (!reuse_dir.empty()) ReusePinnedMaps(env, obj.get(), reuse_dir);
  g_libbpf_log.clear();
  if (int err = bpf_object__load(obj.get())) ThrowBpfErrno(env, err, "bpf_object__load");
  g_loaded = std::make_unique<LoadedObject>();
  g_loaded->obj = std::move(obj);
  return env.Undefined();
}

// bpfAttach({cgroupPath, programs, pinDir?}): all-or-nothing; links are pinned as <pinDir>/<program> and the
// maps as <pinDir>/<map> when pinDir is given, so the attachment outlives this process.
Napi::Value BpfAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowArgTypeError(env, "options", "an object");
  Napi::Object options = info[0].As<Napi::Object>();
  std::string cgroup_path = GetString(options, "cgroupPath", "");
  std::string pin_dir = GetString(options, "pinDir", "");
  if (cgroup_path.empty()) ThrowArgTypeError(env, "cgroupPath", "a cgroup v2 directory path");
  CheckPinDir(env, pin_dir);
  std::vector<const ProgramSpec *> specs;
  Napi::Value programs = options.Get("programs");
  if (!programs.IsArray()) ThrowArgTypeError(env, "programs", "an array of program names");
  Napi::Array list = programs.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    const ProgramSpec *spec = v.IsString() ? FindSpec(v.As<Napi::String>().Utf8Value()) : nullptr;
    if (spec == nullptr) ThrowArgTypeError(env, "programs[" + std::to_string(i) + "]", "connect4, connect6, sockops, getsockopt or sk_msg");
    specs.push_back(spec);
  }
  std::stable_partition(specs.begin(), specs.end(), [](const ProgramSpec *spec) { return !IsRewrite(spec->name); });
  if (!g_loaded) ThrowErrno(env, ENOENT, "bpfAttach");  // nothing loaded: call bpfLoad first (after the argument checks)

  Fd cgroup(open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (cgroup.get() < 0) ThrowErrno(env, errno, "open");
  if (!pin_dir.empty()) PreparePinDir(env, pin_dir);

  bpf_object *obj = g_loaded->obj.get();
  std::vector<std::unique_ptr<Attachment>> done;
  std::vector<std::string> map_pins;
  int err = 0;
  int updated_count = 0;
  int unchanged_count = 0;
  const char *failed = nullptr;
  for (const ProgramSpec *spec : specs) {
    auto a = std::make_unique<Attachment>();
    a->cgroup_path = cgroup_path;
    a->spec = spec;
    if (!pin_dir.empty()) {
      // A link already pinned here for this program is updated in place; anything else pinned under its name is
      // a stale leftover, detached and replaced.
      std::string path = pin_dir + "/" + spec->name;
      bool updated = false;
      int kept = UpdatePinnedLink(obj, *spec, cgroup.get(), path, *a, &updated, &failed);
      if (kept < 0) { err = kept; goto rollback; }
      if (updated) {
        done.push_back(std::move(a));
        if (kept == 1) unchanged_count++;
        else updated_count++;
        continue;
      }
      Fd stale(bpf_obj_get(path.c_str()));
      if (stale.get() >= 0) bpf_link_detach(stale.get());
      if (unlink(path.c_str()) != 0 && errno != ENOENT) { err = -errno; failed = "unlink"; goto rollback; }
    }
    if ((err = AttachOne(obj, *spec, cgroup.get(), *a, &failed)) != 0) goto rollback;
    if (!pin_dir.empty() && a->link.get() >= 0) {
      std::string path = pin_dir + "/" + spec->name;
      if (bpf_obj_pin(a->link.get(), path.c_str()) != 0) {
        err = -errno;
        failed = "bpf_obj_pin";
        DetachOne(obj, *a);
        goto rollback;
      }
      a->pin_path = path;
    }
    done.push_back(std::move(a));
  }
  if (!pin_dir.empty()) {
    bpf_map *map;
    bpf_object__for_each_map(map, obj) {
      if (bpf_map__is_internal(map)) continue;
      std::string path = pin_dir + "/" + bpf_map__name(map);
      if (bpf_obj_pin(bpf_map__fd(map), path.c_str()) != 0) {
        if (errno != EEXIST) {
          err = -errno;
          failed = "bpf_obj_pin";
          goto rollback;
        }
        // A pin is already there: this object's own map (a second attach into the same dir) is kept; any other
        // map (a crashed run's, another object's) is stale, since this object's links were just pinned here,
        // and is replaced so readers of the pin see the maps these programs use.
        bpf_map_info ours{}, theirs{};
        Fd existing(bpf_obj_get(path.c_str()));
        if (!MapInfo(bpf_map__fd(map), &ours)) { err = -errno; failed = "bpf_obj_get_info_by_fd"; goto rollback; }
        if (existing.get() >= 0 && MapInfo(existing.get(), &theirs) && theirs.id == ours.id) continue;
        if (unlink(path.c_str()) != 0 && errno != ENOENT) { err = -errno; failed = "unlink"; goto rollback; }
        if (bpf_obj_pin(bpf_map__fd(map), path.c_str()) != 0) { err = -errno; failed = "bpf_obj_pin"; goto rollback; }
      }
      map_pins.push_back(path);
    }
  }

  for (auto &a : done) {
    a->replaced_prog.reset();
    g_loaded->attachments.push_back(std::move(a));
  }
  for (auto &p : map_pins) g_loaded->map_pins.push_back(p);
  if (AnySkMsg()) SetSockmapEnabled(obj, true);
  {
    Napi::Object result = Napi::Object::New(env);
    result.Set("updated", Napi::Number::New(env, updated_count));
    result.Set("unchanged", Napi::Number::New(env, unchanged_count));
    return result;
  }

rollback:
  for (auto it = done.rbegin(); it != done.rend(); ++it) {  // the rewrite (attached last) first
    Attachment &a = **it;
    if (a.replaced_prog.get() >= 0 || a.kept) {
      // Updated in place: the previous program goes back; the link and its pin stay as they were.
      if (a.replaced_prog.get() >= 0) bpf_link_update(a.link.get(), a.replaced_prog.get(), nullptr);
      a.link.reset();
      a.pin_path.clear();
      continue;
    }
    DetachOne(obj, a);
  }
  for (auto &p : map_pins) unlink(p.c_str());
  if (!pin_dir.empty()) RemovePinDirIfEmpty(pin_dir);
  ThrowBpfErrno(env, err, failed);
}

// Detaches and unpins whatever is pinned in a directory, including pins left by another (possibly dead) process.
int DetachPinDir(const std::string &pin_dir, int *count) {
  DIR *dir = opendir(pin_dir.c_str());
  if (dir == nullptr) return errno == ENOENT ? 0 : -errno;
  std::vector<std::string> names;
  while (dirent *entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  std::stable_partition(names.begin(), names.end(), [](const std::string &name) { return IsRewrite(name.c_str()); });
  int result = 0;
  for (const std::string &name : names) {
    std::string path = pin_dir + "/" + name;
    const ProgramSpec *spec = FindSpec(name);
    if (spec != nullptr) {
      Fd link(bpf_obj_get(path.c_str()));
      if (link.get() >= 0) {
        if (bpf_link_detach(link.get()) == 0) (*count)++;
        else if (errno != ENOLINK && errno != EINVAL && result == 0) result = -errno;
      }
    }
    if (unlink(path.c_str()) != 0 && errno != ENOENT && result == 0) result = -errno;
  }
  RemovePinDirIfEmpty(pin_dir);
  return result;
}

// bpfDetach({cgroupPath?, programs?, pinDir?}) -> {detached}: without cgroupPath every attachment of the loaded
// object goes; with pinDir whatever is pinned there goes too, then the directory.
Napi::Value BpfDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object options = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  std::string cgroup_path = GetString(options, "cgroupPath", "");
  std::string pin_dir = GetString(options, "pinDir", "");
  CheckPinDir(env, pin_dir);
  std::vector<std::string> only;
  Napi::Value programs = options.Has("programs") ? options.Get("programs") : env.Undefined();
  // Anything but "absent" or a non-empty list is refused: ignoring it would detach every program.
  if (!programs.IsUndefined() && (!programs.IsArray() || programs.As<Napi::Array>().Length() == 0))
    ThrowArgTypeError(env, "programs", "a non-empty array of program names (connect4, connect6, sockops, getsockopt, sk_msg)");
  if (programs.IsArray()) {
    Napi::Array list = programs.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value v = list.Get(i);
      if (!v.IsString() || FindSpec(v.As<Napi::String>().Utf8Value()) == nullptr) {
        ThrowArgTypeError(env, "programs[" + std::to_string(i) + "]", "connect4, connect6, sockops, getsockopt or sk_msg");
      }
      only.push_back(v.As<Napi::String>().Utf8Value());
    }
  }
  int detached = 0;
  int err = 0;
  const char *failed = "bpf_link_detach";
  std::vector<std::string> dirs;
  if (g_loaded) {
    auto &list = g_loaded->attachments;
    // The rewrite programs first (see IsRewrite).
    std::stable_partition(list.begin(), list.end(), [](const std::unique_ptr<Attachment> &a) { return IsRewrite(a->spec->name); });
    for (auto it = list.begin(); it != list.end();) {
      Attachment &a = **it;
      bool match = cgroup_path.empty() || a.cgroup_path == cgroup_path;
      if (match && !only.empty()) {
        match = false;
        for (auto &name : only) match = match || name == a.spec->name;
      }
      if (!match) { ++it; continue; }
      if (!a.pin_path.empty()) dirs.push_back(DirOf(a.pin_path));
      int e = DetachOne(g_loaded->obj.get(), a);
      if (e != 0 && err == 0) err = e;
      detached++;
      it = list.erase(it);
    }
    if (!AnySkMsg()) SetSockmapEnabled(g_loaded->obj.get(), false);
    // Map pins go with the last pinned attachment of their directory.
    for (auto it = g_loaded->map_pins.begin(); it != g_loaded->map_pins.end();) {
      std::string dir = DirOf(*it);
      bool still_used = false;
      for (auto &a : g_loaded->attachments) still_used = still_used || (!a->pin_path.empty() && DirOf(a->pin_path) == dir);
      if (still_used) { ++it; continue; }
      unlink(it->c_str());
      dirs.push_back(dir);
      it = g_loaded->map_pins.erase(it);
    }
  }
  for (auto &dir : dirs) RemovePinDirIfEmpty(dir);
  if (!pin_dir.empty()) {
    int e = DetachPinDir(pin_dir, &detached);
    if (e != 0 && err == 0) { err = e; failed = "unlink"; }
  }
  if (err != 0) ThrowBpfErrno(env, err, failed);
  Napi::Object result = Napi::Object::New(env);
  result.Set("detached", Napi::Number::New(env, detached));
  return result;
}

// bpfUnload({keepPinned?}): detaches everything the loaded object has attached (pins included) and closes it.
// keepPinned leaves pinned links and maps as they are (their pins hold them), so a re-apply in this process can
// update them in place.
Napi::Value BpfUnload(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!g_loaded) return env.Undefined();
  bool keep_pinned = info.Length() > 0 && info[0].IsObject() && info[0].As<Napi::Object>().Get("keepPinned").ToBoolean().Value();
  std::vector<std::string> dirs;
  auto &list = g_loaded->attachments;
  std::stable_partition(list.begin(), list.end(), [](const std::unique_ptr<Attachment> &a) { return IsRewrite(a->spec->name); });
  for (auto &a : list) {
    if (keep_pinned && !a->pin_path.empty()) continue;
    if (!a->pin_path.empty()) dirs.push_back(DirOf(a->pin_path));
    DetachOne(g_loaded->obj.get(), *a);
  }
  for (auto &p : g_loaded->map_pins) {
    if (keep_pinned) break;
    unlink(p.c_str());
    dirs.push_back(DirOf(p));
  }
  for (auto &dir : dirs) RemovePinDirIfEmpty(dir);
  g_loaded.reset();
  return env.Undefined();
}

// bpfAttachments() -> [{cgroupPath, program, pinPath}]: what this process has attached.
Napi::Value BpfAttachments(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  if (!g_loaded) return out;
  uint32_t i = 0;
  for (auto &a : g_loaded->attachments) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("cgroupPath", a->cgroup_path);
    o.Set("program", a->spec->name);
    o.Set("link", Napi::Boolean::New(env, a->link.get() >= 0));
    if (!a->pin_path.empty()) o.Set("pinPath", a->pin_path);
    out.Set(i++, o);
  }
  return out;
}

// bpfStats({pinDir?}) -> counters summed over CPUs, from the loaded object or else from the pinned stats map.
Napi::Value BpfStats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Fd pinned;
  int fd = -1;
  std::string pin_dir;
  if (info.Length() > 0 && info[0].IsObject()) pin_dir = GetString(info[0].As<Napi::Object>(), "pinDir", "");
  CheckPinDir(env, pin_dir);
  std::string source = "the loaded object's stats map";
  if (g_loaded) {
    fd = MapFd(g_loaded->obj.get(), "stats");
  } else if (!pin_dir.empty()) {
    source = pin_dir + "/stats";
    pinned = Fd(bpf_obj_get(source.c_str()));
    if (pinned.get() < 0) ThrowErrno(env, errno, "bpf_obj_get");
    fd = pinned.get();
  } else {
    ThrowErrno(env, ENOENT, "bpfStats");
  }
  // A pin may hold another object's map or an older layout: the lookups below write ncpus * value_size bytes,
  // so the shape is checked against this build's before anything is read.
  bpf_map_info shape{};
  if (!MapInfo(fd, &shape)) ThrowErrno(env, errno, "bpf_obj_get_info_by_fd");
  if (shape.type != BPF_MAP_TYPE_PERCPU_ARRAY || shape.key_size != sizeof(__u32) || shape.value_size != sizeof(__u64) ||
      shape.max_entries != MESHPORT_STAT_MAX) {
    ThrowInvalid(env, "bpfStats",
                 source + " is not this build's stats map: expected a percpu_array with 4-byte keys, 8-byte values and " +
                     std::to_string(MESHPORT_STAT_MAX) + " entries; found map type " + std::to_string(shape.type) +
                     ", key " + std::to_string(shape.key_size) + ", value " + std::to_string(shape.value_size) +
                     ", " + std::to_string(shape.max_entries) + " entries (pinned by another object or an older meshport?)",
                 source);
  }
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) ThrowBpfErrno(env, ncpus, "libbpf_num_possible_cpus");
  std::vector<__u64> values(static_cast<size_t>(ncpus));
  __u64 totals[MESHPORT_STAT_MAX] = {};
  for (__u32 key = 0; key < MESHPORT_STAT_MAX; key++) {
    if (bpf_map_lookup_elem(fd, &key, values.data()) != 0) ThrowErrno(env, errno, "bpf_map_lookup_elem");
    for (__u64 v : values) totals[key] += v;
  }
  Napi::Object out = Napi::Object::New(env);
  auto set = [&](const char *name, int index) { out.Set(name, Napi::Number::New(env, static_cast<double>(totals[index]))); };
  set("hookedConnects", MESHPORT_STAT_HOOKED_CONNECTS);
  set("skippedConnects", MESHPORT_STAT_SKIPPED_CONNECTS);
  set("originalDstRecorded", MESHPORT_STAT_ORIG_DST_RECORDED);
  set("originalDstAnswered", MESHPORT_STAT_ORIG_DST_ANSWERED);
  set("sockmapAdded", MESHPORT_STAT_SOCKMAP_ADDED);
  set("redirectedMessages", MESHPORT_STAT_REDIRECTED_MSGS);
  set("redirectedBytes", MESHPORT_STAT_REDIRECTED_BYTES);
  set("redirectMisses", MESHPORT_STAT_REDIRECT_MISSES);
  set("sockmapFailed", MESHPORT_STAT_SOCKMAP_FAILED);
  return out;
}

// ---- probes: a real load and attach in a scratch cgroup, so "supported" means this kernel took it ----

std::string Cgroup2Mount() {
  std::ifstream mounts("/proc/mounts");
  std::string device, dir, type, rest;
  while (mounts >> device >> dir >> type && std::getline(mounts, rest)) {
    if (type == "cgroup2") return dir;
  }
  return "";
}

std::string Why(int err, const char *what) {
  if (err < 0) err = -err;
  std::string reason = std::string(what) + ": " + std::strerror(err) + " (" + ErrnoName(err) + ")";
  if (!g_libbpf_log.empty()) {
    std::string tail = g_libbpf_log.size() > 400 ? g_libbpf_log.substr(g_libbpf_log.size() - 400) : g_libbpf_log;
    reason += " (libbpf: " + tail + ")";
  }
  return reason;
}

// Loads only `wanted` (plus nothing else) and attaches them to the scratch cgroup; "" on success, else why not.
std::string ProbePrograms(const std::string &object_dir, int cgroup_fd, const std::vector<const char *> &wanted) {
  g_libbpf_log.clear();
  std::string path = object_dir + "/" + kObjectFile;
  bpf_object *raw = bpf_object__open_file(path.c_str(), nullptr);
  if (raw == nullptr) return Why(errno, "bpf_object__open_file");
  ObjectPtr obj(raw);
  bpf_program *prog;
  bpf_object__for_each_program(prog, raw) {
    bool keep = false;
    for (const char *name : wanted) keep = keep || std::strcmp(FindSpec(name)->bpf_name, bpf_program__name(prog)) == 0;
    bpf_program__set_autoload(prog, keep);
  }
  if (int err = bpf_object__load(raw)) return Why(err, "bpf_object__load");
  std::vector<std::unique_ptr<Attachment>> attached;
  std::string reason;
  for (const char *name : wanted) {
    auto a = std::make_unique<Attachment>();
    a->spec = FindSpec(name);
    const char *failed = "";
    if (int err = AttachOne(raw, *a->spec, cgroup_fd, *a, &failed)) {
      reason = Why(err, (std::string(failed) + " " + name).c_str());
      break;
    }
    attached.push_back(std::move(a));
  }
  for (auto &a : attached) DetachOne(raw, *a);
  return reason;
}

// bpfProbe({objectDir}) -> {connectHook: {supported, reason?}, sockmap: {supported, reason?}}. Never throws for
// a kernel that lacks something: that is what the answer is for.
Napi::Value BpfProbe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowArgTypeError(env, "options", "an object");
  std::string object_dir = GetString(info[0].As<Napi::Object>(), "objectDir", "");
  if (object_dir.empty()) ThrowArgTypeError(env, "objectDir", "a non-empty string");
  std::string connect_reason, sockmap_reason;
  std::string root = Cgroup2Mount();
  if (root.empty()) {
    connect_reason = sockmap_reason = "no cgroup v2 hierarchy is mounted";
  } else {
    static std::atomic<unsigned> counter{0};  // shared by every environment of the process
    std::string scratch = root + "/meshport-probe-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    if (mkdir(scratch.c_str(), 0755) != 0) {
      connect_reason = sockmap_reason = Why(errno, ("mkdir " + scratch).c_str());
    } else {
      Fd cgroup(open(scratch.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (cgroup.get() < 0) {
        connect_reason = sockmap_reason = Why(errno, "open cgroup");
      } else {
        connect_reason = ProbePrograms(object_dir, cgroup.get(), {"connect4", "connect6", "sockops", "getsockopt"});
        sockmap_reason = ProbePrograms(object_dir, cgroup.get(), {"sockops", "sk_msg"});
      }
      cgroup.reset();
      rmdir(scratch.c_str());
    }
  }
  auto entry = [&](const std::string &reason) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("supported", Napi::Boolean::New(env, reason.empty()));
    if (!reason.empty()) o.Set("reason", reason);
    return o;
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("connectHook", entry(connect_reason));
  out.Set("sockmap", entry(sockmap_reason));
  return out;
}

// bpfOriginalDst(fd) -> {address, port}: getsockopt(SOL_IP, SO_ORIGINAL_DST), answered by conntrack after
// REDIRECT or by meshport_getsockopt for connects the connect4 hook captured.
Napi::Value BpfOriginalDst(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(CheckInteger(env, info[0], "fd", 0, INT32_MAX));
  sockaddr_in sin{};
  socklen_t len = sizeof(sin);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sin, &len) != 0) ThrowErrno(env, errno, "getsockopt");
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text));
  Napi::Object out = Napi::Object::New(env);
  out.Set("address", text);
  out.Set("port", Napi::Number::New(env, ntohs(sin.sin_port)));
  return out;
}

// bpfEnsureBpffs() -> true when this call mounted bpffs at /sys/fs/bpf (so the caller may unmount it later).
Napi::Value BpfEnsureBpffs(const Napi::CallbackInfo &info) {
  return Napi::Boolean::New(info.Env(), EnsureBpffs(info.Env()));
}

}  // namespace

void InitBpf(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CaptureLibbpfLog);
  // A worker_thread's environment ends before its thread: unload its object then, on its own thread.
  env.AddCleanupHook([]() { g_loaded.reset(); });
  exports.Set("bpfLoad", Napi::Function::New(env, BpfLoad, "bpfLoad"));
  exports.Set("bpfUnload", Napi::Function::New(env, BpfUnload, "bpfUnload"));
  exports.Set("bpfAttach", Napi::Function::New(env, BpfAttach, "bpfAttach"));
  exports.Set("bpfDetach", Napi::Function::New(env, BpfDetach, "bpfDetach"));
  exports.Set("bpfAttachments", Napi::Function::New(env, BpfAttachments, "bpfAttachments"));
  exports.Set("bpfStats", Napi::Function::New(env, BpfStats, "bpfStats"));
  exports.Set("bpfProbe", Napi::Function::New(env, BpfProbe, "bpfProbe"));
  exports.Set("bpfOriginalDst", Napi::Function::New(env, BpfOriginalDst, "bpfOriginalDst"));
  exports.Set("bpfEnsureBpffs", Napi::Function::New(env, BpfEnsureBpffs, "bpfEnsureBpffs"));
}

}  // namespace meshport
