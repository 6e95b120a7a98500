// kvtier: the operator's view of the local kvtierd.
//
//   kvtier [--socket PATH] [--timeout-ms N] <status|tiers|namespaces|blocks|drop|cluster|top>
//   [--json]
//
// Exit status: 0 ok; 1 bad arguments or an error the daemon answered; 2 no daemon reachable
// (UNAVAILABLE or DEADLINE_EXCEEDED). Errors are one line on stderr: "kvtier: <message>".
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "kvtier/client.h"
#include "kvtier/weights.h"
#include "top.h"
#include "weights_cmd.h"

namespace {

using kvtier::Status;

constexpr int kExitError = 1;
constexpr int kExitUnreachable = 2;

int Fail(const Status& status) {
  std::cerr << "kvtier: " << (status.message().empty() ? status.ToString() : status.message())
            << '\n';
  const bool unreachable = status.code() == Status::Code::kUnavailable ||
                           status.code() == Status::Code::kDeadlineExceeded;
  return unreachable ? kExitUnreachable : kExitError;
}

int Main(int argc, char** argv) {
  CLI::App app{"kvtier: inspect and manage the local kvtierd"};
  app.set_version_flag("--version", KVTIER_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags may come after the command too

  std::string socket_path;
  int timeout_ms = 5000;
  bool json = false;
  app.add_option("--socket", socket_path,
                 "daemon socket (default: $KVTIER_SOCKET, else ./var/kvtier.sock)");
  app.add_option("--timeout-ms", timeout_ms, "deadline of each call")->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print JSON instead of tables");
  // Over TCP (a kvtierd --listen), with mutual TLS when the daemon requires it.
  kvtier::ClientOptions tcp;
  app.add_option("--address", tcp.address, "daemon's TCP listener HOST:PORT instead of --socket");
  app.add_option("--tls-cert", tcp.tls_cert, "PEM client certificate for --address (mutual TLS)");
  app.add_option("--tls-key", tcp.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", tcp.tls_ca, "PEM CA certificate that signed the daemon's");
  app.add_option("--tls-server-name", tcp.tls_server_name,
                 "name expected in the daemon's certificate (default: the host of --address)");
  app.add_option("--request-id", tcp.request_id,
                 "sent as x-request-id with every call (the daemon logs it with failed calls)");

  CLI::App* status = app.add_subcommand("status", "daemon, tiers, namespaces, leases, hit rate");
  CLI::App* tiers = app.add_subcommand("tiers", "capacity, usage and counters of each tier");
  CLI::App* namespaces = app.add_subcommand("namespaces", "registered namespaces");

  CLI::App* blocks = app.add_subcommand("blocks", "cached blocks");
  std::string blocks_ns;
  uint32_t limit = 0;
  blocks->add_option("--ns", blocks_ns, "only this namespace (16 hex digits)");
  blocks->add_option("--limit", limit, "at most this many blocks (default: the daemon's, 1000)");
  std::string blocks_tier;
  blocks->add_option("--tier", blocks_tier, "only blocks in this tier: hbm, dram or nvme");

  CLI::App* cluster =
      app.add_subcommand("cluster", "members of the cluster, their state, roster version");
  CLI::App* top = app.add_subcommand(
      "top", "live view: tiers, rates, hit ratio, hottest namespaces, peers (Ctrl-C to quit)");
  kvtier::cli::TopArgs top_args;
  top->add_option("--interval-ms", top_args.interval_ms, "refresh period")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  top->add_option("--iterations", top_args.iterations,
                  "frames to print (default: until Ctrl-C on a terminal, one otherwise)")
      ->check(CLI::NonNegativeNumber);
  CLI::App* drop = app.add_subcommand("drop", "drop blocks of a namespace");
  std::string drop_ns;
  bool drop_all = false;
  std::vector<std::string> drop_keys;
  drop->add_option("--ns", drop_ns, "namespace (16 hex digits)")->required();
  drop->add_flag("--all", drop_all, "every block of the namespace");
  drop->add_option("keys", drop_keys, "block keys (32 hex digits each)");

  // Weight cache (issue 6): kvtier weights pull|ls|prefetch|pin.
  CLI::App* weights = app.add_subcommand("weights", "model-weight cache: pull, ls, prefetch, pin");
  weights->require_subcommand(1);
  kvtier::cli::WeightsPullArgs pull_args;
  CLI::App* w_pull = weights->add_subcommand("pull", "pull a file through the cache into --to DIR");
  w_pull->add_option("uri", pull_args.uri, "file:///path or http(s)://host/path")->required();
  w_pull->add_option("--to", pull_args.dir, "directory to write the file into")->required();
  w_pull->add_option("--streams", pull_args.streams, "reads in flight")->capture_default_str();
  CLI::App* w_ls = weights->add_subcommand("ls", "cached files, chunks per tier, holders");
  std::string w_uri;
  bool unpin = false;
  CLI::App* w_prefetch =
      weights->add_subcommand("prefetch", "start fetching a file into the cache");
  w_prefetch->add_option("uri", w_uri, "file URI")->required();
  CLI::App* w_pin = weights->add_subcommand("pin", "keep a file's chunks out of KV churn's reach");
  w_pin->add_option("uri", w_uri, "file URI")->required();
  w_pin->add_flag("--unpin", unpin, "let the file's chunks go again");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    constexpr const char* kCommands =
        "(commands: status, tiers, namespaces, blocks, drop, cluster, top, weights)";
    if (app.get_subcommands().empty() && !app.remaining().empty()) {
      std::cerr << "kvtier: unknown command '" << app.remaining().front() << "' " << kCommands
                << '\n';
    } else if (app.get_subcommands().empty() &&
               std::string(e.what()).find("ubcommand") != std::string::npos) {
      std::cerr << "kvtier: no command given " << kCommands << '\n';
    } else {
      std::cerr << "kvtier: " << e.what() << " (see kvtier --help)\n";
    }
    return kExitError;
  }

  // Arguments first: a typo is reported without waiting on a daemon.
  kvtier::cli::BlocksArgs blocks_args;
  kvtier::cli::DropArgs drop_args;
  if (blocks->parsed()) {
    if (Status s = kvtier::cli::ParseBlocksArgs(blocks_ns, limit, &blocks_args, blocks_tier);
        !s.ok()) {
      return Fail(s);
    }
  }
  if (drop->parsed()) {
    if (Status s = kvtier::cli::ParseDropArgs(drop_ns, drop_all, drop_keys, &drop_args); !s.ok()) {
      return Fail(s);
    }
  }

  if (weights->parsed()) {
    kvtier::ClientOptions woptions;
    woptions.socket_path = socket_path;
    woptions.timeout_ms = timeout_ms;
    woptions.map_arena = w_pull->parsed();
    woptions.prefault = false;
    std::unique_ptr<kvtier::WeightClient> wclient;
    if (Status s = kvtier::WeightClient::Connect(woptions, &wclient); !s.ok()) return Fail(s);
    Status r;
    if (w_pull->parsed()) {
      pull_args.json = json;
      pull_args.progress = isatty(STDERR_FILENO) == 1;
      r = kvtier::cli::RunWeightsPull(*wclient, pull_args, std::cout, std::cerr);
    } else if (w_ls->parsed()) {
      r = kvtier::cli::RunWeightsList(*wclient, json, std::cout);
    } else if (w_prefetch->parsed()) {
      r = kvtier::cli::RunWeightsPrefetch(*wclient, w_uri, json, std::cout);
    } else if (w_pin->parsed()) {
      r = kvtier::cli::RunWeightsPin(*wclient, w_uri, unpin, json, std::cout);
    }
    if (!r.ok()) return Fail(r);
    std::cout.flush();
    return 0;
  }

  kvtier::ClientOptions options;
  options.socket_path = socket_path;
  options.timeout_ms = timeout_ms;
  options.map_arena = false;  // control calls only
  options.address = tcp.address;
  options.tls_cert = tcp.tls_cert;
  options.tls_key = tcp.tls_key;
  options.tls_ca = tcp.tls_ca;
  options.tls_server_name = tcp.tls_server_name;
  options.request_id = tcp.request_id;
  std::unique_ptr<kvtier::Client> client;
  if (Status s = kvtier::Client::Connect(options, &client); !s.ok()) return Fail(s);

  Status result;
  if (status->parsed()) {
    result = kvtier::cli::RunStatus(*client, json, std::cout);
  } else if (tiers->parsed()) {
    result = kvtier::cli::RunTiers(*client, json, std::cout);
  } else if (namespaces->parsed()) {
    result = kvtier::cli::RunNamespaces(*client, json, std::cout);
  } else if (blocks->parsed()) {
    result = kvtier::cli::RunBlocks(*client, blocks_args, json, std::cout);
  } else if (drop->parsed()) {
    result = kvtier::cli::RunDrop(*client, drop_args, json, std::cout);
  } else if (cluster->parsed()) {
    result = kvtier::cli::RunCluster(*client, json, std::cout);
  } else if (top->parsed()) {
    top_args.terminal = isatty(STDOUT_FILENO) == 1;
    result = kvtier::cli::RunTop(*client, top_args, std::cout);
  }
  if (!result.ok()) return Fail(result);
  std::cout.flush();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "kvtier: internal error: " << e.what() << '\n';
    return kExitError;
  }
}
