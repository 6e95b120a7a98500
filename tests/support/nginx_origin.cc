#include "tests/support/nginx_origin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/free_port.h"
#include "common/local_daemon.h"
#include "tests/support/http_get.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr const char* kIp = "/usr/sbin/ip";
constexpr const char* kTc = "/usr/sbin/tc";
constexpr const char* kNetnsPrefix = "kvtw-";  // kvtw-<pid>-<seq>
// Private /30s for the veth pairs come out of 198.18.0.0/15 (RFC 2544, benchmark testing).
constexpr uint32_t kSubnetBase = (198u << 24) | (18u << 16);
constexpr uint32_t kSubnetCount = (1u << 17) / 4;
constexpr int kNamespacePort = 8080;  // nothing else listens inside our own namespace

std::atomic<int> next_seq{0};

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Ipv4(uint32_t addr) {
  return absl::StrCat(addr >> 24, ".", (addr >> 16) & 0xff, ".", (addr >> 8) & 0xff, ".",
                      addr & 0xff);
}

// Runs `argv`; an error with `code` naming the command and its output when it fails.
absl::Status Run(const std::vector<std::string>& argv, absl::StatusCode code) {
  ProcessResult r = RunProgram(argv, 20);
  if (r.exit_code == 0) return absl::OkStatus();
  return absl::Status(code, absl::StrCat("`", absl::StrJoin(argv, " "), "` failed (exit ",
                                         r.exit_code, "): ", r.output));
}

bool CanConnect(const std::string& host, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// Removes namespaces (and their host-side veths) of processes that died without cleaning up.
void RemoveStaleNamespaces() {
  ProcessResult list = RunProgram({kIp, "netns", "list"}, 10);
  if (list.exit_code != 0) return;
  for (absl::string_view line : absl::StrSplit(list.output, '\n', absl::SkipEmpty())) {
    const std::string name(line.substr(0, line.find(' ')));
    absl::string_view rest = name;
    if (!absl::ConsumePrefix(&rest, kNetnsPrefix)) continue;
    const std::vector<std::string> parts = absl::StrSplit(rest, '-');
    int pid = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;  // its owner is alive
    ProcessResult pids = RunProgram({kIp, "netns", "pids", name}, 10);
    for (absl::string_view p : absl::StrSplit(pids.output, '\n', absl::SkipEmpty())) {
      int inside = 0;
      if (absl::SimpleAtoi(p, &inside) && inside > 0) kill(inside, SIGKILL);
    }
    RunProgram({kIp, "link", "del", absl::StrCat("kvw", parts[0], "x", parts[1], "h")}, 10);
    RunProgram({kIp, "netns", "del", name}, 10);
  }
}

// The /30 indexes (within 198.18.0.0/15) of IPv4 addresses configured in this namespace.
std::set<uint32_t> UsedSubnets() {
  std::set<uint32_t> used;
  ProcessResult r = RunProgram({kIp, "-o", "-4", "addr", "show"}, 10);
  for (absl::string_view line : absl::StrSplit(r.output, '\n', absl::SkipEmpty())) {
    const size_t at = line.find(" inet ");
    if (at == absl::string_view::npos) continue;
    absl::string_view addr = line.substr(at + 6);
    addr = addr.substr(0, addr.find('/'));
    in_addr a{};
    if (inet_pton(AF_INET, std::string(addr).c_str(), &a) != 1) continue;
    const uint32_t v = ntohl(a.s_addr);
    if (v >= kSubnetBase && v < kSubnetBase + 4 * kSubnetCount) used.insert((v - kSubnetBase) / 4);
  }
  return used;
}

}  // namespace

bool NginxOrigin::Available(const std::string& binary) { return access(binary.c_str(), X_OK) == 0; }

absl::StatusOr<std::unique_ptr<NginxOrigin>> NginxOrigin::Start(const NginxOriginOptions& options) {
  if (!Available(options.nginx_binary)) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.nginx_binary, " is not installed (scripts/deps installs nginx)"));
  }
  if (options.rate_bits_per_sec > 0 && !options.network_namespace) {
    return absl::InvalidArgumentError("rate_bits_per_sec needs network_namespace");
  }
  char tmpl[] = "/tmp/kvtier-origin-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  auto origin = std::unique_ptr<NginxOrigin>(new NginxOrigin());
  origin->options_ = options;
  origin->dir_ = tmpl;
  origin->root_ = origin->dir_ + "/root";
  std::error_code ec;
  std::filesystem::create_directories(origin->root_, ec);
  std::filesystem::create_directories(origin->dir_ + "/tmp", ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", origin->root_, ": ", ec.message()));
  // nginx may read as another user; the files are test data.
  chmod(origin->dir_.c_str(), 0755);
  chmod(origin->root_.c_str(), 0755);

  if (options.network_namespace) {
    if (absl::Status s = origin->MakeNamespace(); !s.ok()) return s;  // ~NginxOrigin cleans up
    origin->port_ = kNamespacePort;
    if (absl::Status s = origin->WriteConfig(); !s.ok()) return s;
    if (absl::Status s = origin->Launch(); !s.ok()) return s;
    return origin;
  }
  // A port picked free may be taken before nginx binds it: then try other ports.
  absl::Status status;
  for (int attempt = 0; attempt < 3; ++attempt) {
    origin->port_ = FreeTcpPort();
    if (origin->port_ <= 0) {
      status = absl::InternalError("no free loopback port");
      continue;
    }
    status = origin->WriteConfig();
    if (status.ok()) status = origin->Launch();
    if (status.ok()) return origin;
  }
  return status;
}

absl::Status NginxOrigin::MakeNamespace() {
  RemoveStaleNamespaces();
  const int seq = next_seq.fetch_add(1);
  const std::string pid = absl::StrCat(getpid());
  netns_ = absl::StrCat(kNetnsPrefix, pid, "-", seq);
  veth_host_ = absl::StrCat("kvw", pid, "x", seq, "h");  // at most 15 characters
  veth_ns_ = absl::StrCat("kvw", pid, "x", seq, "n");
  if (absl::Status s = Run({kIp, "netns", "add", netns_}, absl::StatusCode::kUnavailable);
      !s.ok()) {
    netns_.clear();
    return absl::UnavailableError(absl::StrCat(
        "network namespaces are not available here (needs CAP_NET_ADMIN): ", s.message()));
  }
  if (absl::Status s = Run({kIp, "link", "add", veth_host_, "type", "veth", "peer", "name",
                            veth_ns_, "netns", netns_},
                           absl::StatusCode::kUnavailable);
      !s.ok()) {
    veth_host_.clear();
    return absl::UnavailableError(absl::StrCat("veth pairs are not available here: ", s.message()));
  }
  // Pick a /30 no interface here uses and take it, under a lock shared by all test processes.
  {
    const int lock = open("/tmp/kvtier-origin-netns.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) {
      if (lock >= 0) close(lock);
      return absl::InternalError("cannot lock /tmp/kvtier-origin-netns.lock");
    }
    const std::set<uint32_t> used = UsedSubnets();
    uint32_t index =
        (static_cast<uint32_t>(getpid()) * 64 + static_cast<uint32_t>(seq)) % kSubnetCount;
    for (uint32_t tries = 0; used.count(index) > 0 && tries < kSubnetCount; ++tries) {
      index = (index + 1) % kSubnetCount;
    }
    const uint32_t net = kSubnetBase + 4 * index;
    host_ = Ipv4(net + 2);
    absl::Status s =
        Run({kIp, "addr", "add", absl::StrCat(Ipv4(net + 1), "/30"), "dev", veth_host_},
            absl::StatusCode::kInternal);
    flock(lock, LOCK_UN);
    close(lock);
    if (!s.ok()) return s;
  }
  for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
           {kIp, "link", "set", veth_host_, "up"},
           {kIp, "-n", netns_, "addr", "add", absl::StrCat(host_, "/30"), "dev", veth_ns_},
           {kIp, "-n", netns_, "link", "set", veth_ns_, "up"},
           {kIp, "-n", netns_, "link", "set", "lo", "up"}}) {
    if (absl::Status s = Run(cmd, absl::StatusCode::kInternal); !s.ok()) return s;
  }
  if (options_.rate_bits_per_sec > 0) {
    // A bucket of 1/50 s of traffic, at least 128 KiB (a GSO packet on a veth is up to 64 KiB).
    const uint64_t burst = std::max<uint64_t>(options_.rate_bits_per_sec / 8 / 50, 128 * 1024);
    if (absl::Status s = Run({kTc, "-n", netns_, "qdisc", "add", "dev", veth_ns_, "root", "tbf",
                              "rate", absl::StrCat(options_.rate_bits_per_sec, "bit"), "burst",
                              absl::StrCat(burst), "latency", "100ms"},
                             absl::StatusCode::kUnavailable);
        !s.ok()) {
      return absl::UnavailableError(absl::StrCat("tc tbf is not available here: ", s.message()));
    }
  }
  return absl::OkStatus();
}

void NginxOrigin::DeleteNamespace() {
  if (!veth_host_.empty()) RunProgram({kIp, "link", "del", veth_host_}, 10);
  if (!netns_.empty()) {
    // Anything still inside (nothing, once nginx is dead) would keep the namespace alive.
    ProcessResult pids = RunProgram({kIp, "netns", "pids", netns_}, 10);
    for (absl::string_view p : absl::StrSplit(pids.output, '\n', absl::SkipEmpty())) {
      int inside = 0;
      if (absl::SimpleAtoi(p, &inside) && inside > 0) kill(inside, SIGKILL);
    }
    RunProgram({kIp, "netns", "del", netns_}, 10);
  }
  veth_host_.clear();
  netns_.clear();
}

absl::Status NginxOrigin::WriteConfig() {
  const bool tls = !options_.tls_cert.empty();
  const std::string listen = absl::StrCat(host_, ":", port_, tls ? " ssl" : "");
  const std::string local = absl::StrCat("127.0.0.1:", port_);
  const std::string local_listen = absl::StrCat(local, tls ? " ssl" : "");
  const std::string scheme = tls ? "https" : "http";
  std::ostringstream c;
  c << "daemon off;\n"
    << "master_process off;\n"  // one process: SIGKILL ends all of nginx
    << (geteuid() == 0 ? "user root;\n" : "") << "pid " << dir_ << "/nginx.pid;\n"
    << "error_log " << dir_ << "/error.log warn;\n"
    << "events { worker_connections 1024; }\n"
    << "http {\n"
    << "  default_type application/octet-stream;\n"
    << "  log_format kvtier '$status $body_bytes_sent $msec $request_time $request_method "
       "$request_uri \"$http_range\"';\n"
    << "  access_log " << dir_ << "/access.log kvtier;\n"
    << "  client_body_temp_path " << dir_ << "/tmp/body;\n"
    << "  proxy_temp_path " << dir_ << "/tmp/proxy;\n"
    << "  fastcgi_temp_path " << dir_ << "/tmp/fastcgi;\n"
    << "  uwsgi_temp_path " << dir_ << "/tmp/uwsgi;\n"
    << "  scgi_temp_path " << dir_ << "/tmp/scgi;\n"
    << "  sendfile on;\n  tcp_nopush on;\n  etag on;\n"
    << "  keepalive_timeout 60s;\n  keepalive_requests 100000;\n"
    << "  server {\n"
    << "    listen " << listen << ";\n"
    << (listen != local_listen ? absl::StrCat("    listen ", local_listen, ";\n") : "")
    << (tls ? absl::StrCat("    ssl_certificate ", options_.tls_cert, ";\n    ssl_certificate_key ",
                           options_.tls_key, ";\n")
            : "")
    << "    root " << root_ << ";\n"
    << "    location / { }\n"
    << "    location /error500/ { return 500; }\n"
    << "    location /close/ { return 444; }\n"
    << "    location /slow/ { alias " << root_ << "/; limit_rate "
    << options_.slow_rate_bytes_per_sec
    << "; }\n"
    // /cut/ proxies to /cutsrc/, which sends cut_after_bytes and then (nearly) stops; the
    // proxy's read timeout then closes the client's connection mid-body.
    << "    location /cut/ { proxy_pass " << scheme << "://" << local
    << "/cutsrc/; proxy_buffering off; "
    << "proxy_read_timeout 300ms; }\n"
    << "    location /cutsrc/ { alias " << root_ << "/; allow 127.0.0.1; deny all; "
    << "access_log off; limit_rate_after " << options_.cut_after_bytes << "; limit_rate 1; }\n"
    << "    location = /nginx_status { stub_status; access_log off; }\n"
    << "  }\n"
    << "}\n";
  std::ofstream out(dir_ + "/nginx.conf", std::ios::trunc);
  out << c.str();
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", dir_, "/nginx.conf"));
  return absl::OkStatus();
}

absl::Status NginxOrigin::Launch() {
  // SpawnUntil waits for a line on stdout; nginx prints nothing there, so a shell prints the line
  // and then becomes nginx (through `ip netns exec`, which execs too: the pid is nginx's).
  std::vector<std::string> argv = {"/bin/sh", "-c", "echo spawned; exec \"$0\" \"$@\""};
  if (!netns_.empty()) argv.insert(argv.end(), {kIp, "netns", "exec", netns_});
  argv.insert(argv.end(), {options_.nginx_binary, "-p", dir_ + "/", "-c", dir_ + "/nginx.conf",
                           "-e", dir_ + "/error.log"});
  absl::StatusOr<pid_t> pid = SpawnUntil(argv, "spawned", absl::Seconds(10), dir_ + "/stderr.log");
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  bool exited = false;
  const bool accepting = WaitUntil(
      [&] {
        int wstatus;
        if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
          exited = true;
          return true;
        }
        return CanConnect(host_, port_);
      },
      absl::Seconds(10), absl::Milliseconds(10));
  if (exited) pid_ = -1;
  if (!accepting || exited) {
    Kill();
    return absl::UnavailableError(
        absl::StrCat("nginx did not start serving on ", host_, ":", port_, "; ", ReadErrorLog()));
  }
  return absl::OkStatus();
}

std::string NginxOrigin::Url(const std::string& path) const {
  return absl::StrCat(options_.tls_cert.empty() ? "http" : "https", "://", host_, ":", port_, "/",
                      path);
}

absl::StatusOr<std::string> NginxOrigin::WriteRandomFile(const std::string& name, uint64_t size,
                                                         uint64_t seed) {
  const std::filesystem::path path = std::filesystem::path(root_) / name;
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> buf(1 << 17);  // 1 MiB
  for (uint64_t done = 0; done < size;) {
    for (uint64_t& x : buf) x = rng();
    const uint64_t n = std::min<uint64_t>(size - done, buf.size() * sizeof(uint64_t));
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    done += n;
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path.string()));
  chmod(path.c_str(), 0644);
  return path.string();
}

std::vector<AccessLogEntry> NginxOrigin::AccessLog() const {
  std::vector<AccessLogEntry> entries;
  const std::string log = ReadWhole(dir_ + "/access.log");
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    // <status> <body bytes> <end> <duration> <method> <request uri> "<range>"
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(' ', 6));
    if (f.size() != 7) continue;
    AccessLogEntry e;
    if (!absl::SimpleAtoi(f[0], &e.status) || !absl::SimpleAtoi(f[1], &e.body_bytes) ||
        !absl::SimpleAtod(f[2], &e.end_s) || !absl::SimpleAtod(f[3], &e.duration_s)) {
      continue;
    }
    e.method = std::string(f[4]);
    e.path = std::string(f[5].substr(0, f[5].find('?')));
    absl::string_view range = f[6];
    absl::ConsumePrefix(&range, "\"");
    absl::ConsumeSuffix(&range, "\"");
    if (range != "-") e.range = std::string(range);
    entries.push_back(std::move(e));
  }
  return entries;
}

uint64_t NginxOrigin::BytesServed(const std::string& path) const {
  uint64_t total = 0;
  for (const AccessLogEntry& e : AccessLog()) {
    if (path.empty() || e.path == path) total += e.body_bytes;
  }
  return total;
}

int NginxOrigin::ResponsesInFlight() const {
  absl::StatusOr<HttpResponse> r = HttpGet(host_, port_, "/nginx_status", absl::Seconds(2));
  if (!r.ok() || r->status != 200) return -1;
  const size_t at = r->body.find("Writing: ");
  int writing = 0;
  if (at == std::string::npos) return -1;
  const std::string rest = r->body.substr(at + 9);
  if (!absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &writing)) return -1;
  return writing - 1;  // the status request itself
}

void NginxOrigin::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int wstatus;
  waitpid(pid_, &wstatus, 0);
  pid_ = -1;
}

absl::Status NginxOrigin::Restart() {
  Kill();
  return Launch();
}

std::string NginxOrigin::ReadErrorLog() const {
  return absl::StrCat("nginx error log: ", ReadWhole(dir_ + "/error.log"),
                      "; stderr: ", ReadWhole(dir_ + "/stderr.log"));
}

NginxOrigin::~NginxOrigin() {
  Kill();
  DeleteNamespace();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

CurlResult CurlFetch(const std::string& url, const std::string& out_path, const std::string& range,
                     int timeout_s) {
  const std::string headers_path = out_path + ".headers";
  std::vector<std::string> argv = {"/usr/bin/curl",
                                   "-sS",
                                   "--max-time",
                                   absl::StrCat(timeout_s),
                                   "-o",
                                   out_path,
                                   "-D",
                                   headers_path,
                                   "-w",
                                   "\nhttp_status=%{http_code}\n"};
  if (!range.empty()) argv.insert(argv.end(), {"-r", range});
  argv.push_back(url);
  ProcessResult r = RunProgram(argv, timeout_s + 5);
  CurlResult result;
  result.exit_code = r.exit_code;
  result.output = r.output;
  result.headers = ReadWhole(headers_path);
  std::error_code ec;
  std::filesystem::remove(headers_path, ec);
  const size_t at = r.output.find("http_status=");
  if (at == std::string::npos ||
      !absl::SimpleAtoi(r.output.substr(at + 12, 3), &result.http_status)) {
    result.http_status = 0;
  }
  return result;
}

absl::StatusOr<std::string> Sha256OfFile(const std::string& path) {
  ProcessResult r = RunProgram({"/usr/bin/sha256sum", "-b", path}, 120);
  if (r.exit_code != 0 || r.output.size() < 64) {
    return absl::InternalError(absl::StrCat("sha256sum ", path, ": ", r.output));
  }
  return r.output.substr(0, 64);
}

}  // namespace kvtier::testing
