using System.Text;

namespace Orchestrator.Ctl;

/// <summary>A command's flag: names ("-o|--output"), its value placeholder (null: a switch), help, and how to complete its value.</summary>
/// <remarks>Complete: literal words ("table wide json yaml"), "@files", "@nodes", "@deployments", "@containers", "@contexts", or null (nothing).</remarks>
internal sealed record FlagSpec(string Names, string? Value, string Help, string? Complete = null)
{
    public IEnumerable<string> Each => Names.Split('|');
}

/// <summary>
/// One command: what --help shows (usage, summary, details, flags, examples) and what the shell
/// completions are generated from (flags, and per position the words or the kind of name).
/// </summary>
/// <remarks>Args per position: literal words, "@nodes"/"@deployments"/"@containers"/"@contexts"/"@commands",
/// or "@prev" (the kind is the previous word: get nodes NAME).</remarks>
internal sealed record CommandSpec(string Name, string Group, string Usage, string Summary, FlagSpec[] Flags, string[] Examples, string[] Args, string? Details = null);

internal static class Commands
{
    private static readonly FlagSpec Output = new("-o|--output", "FORMAT", "table (default), wide, json, yaml, name (one name a line), jsonpath=TEMPLATE or custom-columns=HEADER:PATH,… (kubectl's; a list is {\"items\": […]})", "table wide json yaml name jsonpath= custom-columns=");
    private static readonly FlagSpec ListOutput = new("-o|--output", "FORMAT", "ls: table (default), json, or name (one a line)", "table json name");
    private static readonly FlagSpec Selector = new("-l|--selector", "SELECTOR", "only those whose labels match (k=v, k!=v, k, !k, k in (a,b), k notin (a,b); comma: and; nodes: node labels; others: their labels)");
    private static readonly FlagSpec Node = new("-n|--node", "NODE", "the node (env ORCH_NODE, or the context's node)", "@nodes");
    private static readonly FlagSpec NodeOptional = new("-n|--node", "NODE", "only this node (default: every node)", "@nodes");
    private static readonly FlagSpec NodeFind = new("-n|--node", "NODE", "the container's node; without it orchctl finds it (deployment status, then every node)", "@nodes");
    private static readonly FlagSpec File = new("-f|--file", "FILE|DIR|-", "a manifest, a directory of *.yaml/*.yml/*.json, or - for stdin (repeatable)", "@files");
    private static readonly FlagSpec EnvFile = new("--env-file", "FILE", "a compose file's variables from this file instead of its directory's .env (repeatable; the shell's environment wins, as in docker compose)", "@files");
    private static readonly FlagSpec ImageMap = new("--image-map", "SERVICE=IMAGE", "run this image for a compose service (one that only says build:, or another image than the file's); repeatable");
    private static readonly FlagSpec Stack = new("--stack", null, "a compose file's services become a deployment each (docker stack deploy), instead of one app whose containers reach each other by service name (docker compose)");
    private static readonly FlagSpec SignKey = new("--sign-key", "SEED", "sign with this nkey seed file (env ORCH_SIGN_KEY)", "@files");
    private static readonly FlagSpec Since = new("--since", "DURATION", "only what happened in the last DURATION (10m, 1h, 2d; events default 1h)");
    private static readonly FlagSpec Watch = new("-w|--watch", null, "keep watching; Ctrl-C ends");

    public static readonly string[] Groups = ["Fleet", "Deployments", "Containers", "Images", "Signing", "Identity", "Settings"];

    public static readonly CommandSpec[] All =
    [
        new("get", "Fleet", "get nodes|deployments|containers|images|events [NAME] [-o FORMAT] [-l SELECTOR] [-n NODE] [-w]",
            "list nodes, deployments, containers (on every node), images (on every node) or events",
            [Output, Selector, NodeOptional, Since, new("-w|--watch", null, "after the list, a line for each change (events: each new one); Ctrl-C ends")],
            ["orchctl get nodes", "orchctl get nodes -l zone=north -o wide", "orchctl get deployments web -o yaml", "orchctl get containers -n gw-01",
             "orchctl get containers -l app=web -o json", "orchctl get deployments -w", "orchctl get images", "orchctl get events --since 10m"],
            ["nodes deployments containers images events", "@prev"],
            "containers and images are asked of every ready node over NATS (or only -n NODE), with a NODE column; a node that does not answer is named on stderr."),
        new("describe", "Fleet", "describe node NAME | deployment NAME | container NAME [-n NODE]",
            "everything about one node, deployment or container, and its recent events",
            [NodeFind],
            ["orchctl describe node gw-01", "orchctl describe deployment web", "orchctl describe container web-0"],
            ["node deployment container", "@prev"],
            "node: labels, capacity, allocatable, requested and used, conditions, containers; deployment: revision, rollout (wave, surge, canary), replicas and their nodes, why any cannot be placed; container: state, exits, spec."),
        new("top", "Fleet", "top nodes|containers [-n NODE] [-l SELECTOR]",
            "CPU and memory use of nodes (from heartbeats) or containers (from each node's stats)",
            [NodeOptional, Selector],
            ["orchctl top nodes", "orchctl top containers -n gw-01"],
            ["nodes containers"]),
        new("events", "Fleet", "events [-w] [--since 1h] [--for NAME]",
            "what happened in the fleet: container exits, OOM kills, rollbacks, scaling, refusals",
            [Watch, Since, new("--for", "NAME", "only events about this container, deployment or node")],
            ["orchctl events --since 10m", "orchctl events -w --for web"],
            []),
        new("version", "Fleet", "version", "this client's version and every reachable node's", [], ["orchctl version", "orchctl --server nats://10.0.0.5:4222 version"], []),
        new("apply", "Deployments", "apply -f FILE|DIR|- [--dry-run] [--sign-key SEED] [--global] [-l KEY=VALUE] [--stack] [--env-file FILE] [--image-map SVC=IMAGE]",
            "create or change deployments (kind: Deployment) in the fleet; the scheduler places their replicas",
            [File, new("--dry-run", null, "show what would change (created / unchanged / changed, with a diff) and write nothing"), SignKey,
             new("--global", null, "every deployment of the files runs one copy on every matching node (mode: global), as a compose file for one device becomes the fleet's"),
             new("-l|--node-selector", "KEY=VALUE", "add these node labels to every deployment's selector (comma: and)"), Stack, EnvFile, ImageMap],
            ["orchctl apply -f examples/web-deployment.yaml", "orchctl apply -f deploy/ --dry-run", "cat web.yaml | orchctl apply -f -", "orchctl apply -f web.yaml --sign-key op.nk",
             "orchctl apply -f docker-compose.yml --global -l fleet=sensors", "orchctl apply -f docker-compose.yml --image-map web=registry.local/web:1.4"],
            [],
            "a deployment whose content is unchanged is not written again (no new revision). A docker-compose file is one app, named by its top-level name: or its directory (as docker compose names a project): its services run together on a node and reach each other by service name. Its ${VAR}s are filled here, from the shell and the file's .env (as docker compose does), and env_file: files are read here: the fleet stores the values."),
        new("delete", "Deployments", "delete deployment|container|node NAME… | delete -f FILE|DIR|-",
            "remove deployments (and their replicas), a container from its node (a fleet replica is run again by its deployment), or a node that has left the fleet",
            [File, Stack, NodeFind, new("--ignore-not-found", null, "a name that is not there is not an error"),
             new("--force", null, "node: delete it even though it is ready (its next heartbeat brings it back)")],
            ["orchctl delete deployment web", "orchctl delete -f examples/web-deployment.yaml", "orchctl delete container web-0", "orchctl delete node gw-07"],
            ["deployment container node", "@prev"]),
        new("wait", "Deployments", "wait KIND/NAME… --for=condition=C|--for=delete [--wait-timeout 30s]",
            "wait until deployments, containers or nodes meet a condition (or are gone); exit 3 when the time runs out",
            [new("--for", "condition=C|delete", "deployment: complete; container: ready or a state (running, exited, stopped, …); node: ready, unreachable, lost, cordoned; or delete"),
             new("--wait-timeout", "DURATION", "give up after this long (default 30s; exit 3)"), NodeFind],
            ["orchctl wait deployment/web --for=condition=complete --wait-timeout 5m", "orchctl wait container/web-0 --for=condition=ready",
             "orchctl wait node gw-01 gw-02 --for=condition=ready", "orchctl wait deployment/web --for=delete"],
            ["deployment container node", "@prev"]),
        new("scale", "Deployments", "scale DEPLOYMENT N", "set a deployment's replica count (not a global one: it runs on every matching node)", [], ["orchctl scale web 5"], ["@deployments"]),
        new("rollout", "Deployments", "rollout status|history|pause|resume|undo DEPLOYMENT",
            "a rolling update: progress (a line per wave with waves; -w: until it ends), kept revisions, pause, resume, go back",
            [new("-w|--watch", null, "status: follow the rollout until it completes (0), rolls back or fails (1)"),
             new("--wait-timeout", "DURATION", "status -w: give up after this long (exit 3)"),
             new("--to-revision", "N", "undo: go back to this revision (rollout history lists them)"), SignKey],
            ["orchctl rollout status web -w", "orchctl rollout history web", "orchctl rollout undo web --to-revision 3", "orchctl rollout pause web"],
            ["status history pause resume undo", "@deployments"]),
        new("label", "Fleet", "label node NAME KEY=VALUE… KEY-… [--overwrite]",
            "set or remove a node's labels (the node keeps them; selectors and get -l see them within a heartbeat)",
            [new("--overwrite", null, "replace a label that has another value (otherwise refused)")],
            ["orchctl label node gw-01 site=lab", "orchctl label node gw-01 site=depot --overwrite", "orchctl label node gw-01 site-"],
            ["node", "@nodes"],
            "labels set here are kept on the node (its state dir) over its configured ones (--label); removing a configured label hides it until set again. arch is the node's own and cannot change. The node must be connected."),
        new("cordon", "Deployments", "cordon NODE", "no new replicas on NODE (what runs stays)", [], ["orchctl cordon gw-02"], ["@nodes"]),
        new("uncordon", "Deployments", "uncordon NODE", "NODE gets replicas again", [], ["orchctl uncordon gw-02"], ["@nodes"]),
        new("drain", "Deployments", "drain NODE", "move NODE's replicas elsewhere and give it no new ones", [], ["orchctl drain gw-02"], ["@nodes"]),
        new("logs", "Containers", "logs CONTAINER | -l SELECTOR [-f | -p | --run N] [--tail N] [--since DURATION] [-n NODE]",
            "a container's log lines (stdout and stderr), from whichever node runs it; with -l, every matching container's on every node, each line prefixed [NAME]",
            [new("-f|--follow", null, "keep following new lines; Ctrl-C ends"), new("-p|--previous", null, "the last exited run's lines only (the run before a restart)"),
             new("--run", "N", "a job's run N only, every attempt of it (describe container lists the runs kept)"),
             new("--tail", "N", "only the last N lines (of each container)"), Since, NodeFind, Selector],
            ["orchctl logs web-0 --tail 20", "orchctl logs web-0 -f", "orchctl logs web-0 --previous", "orchctl logs backup-0 --run 3", "orchctl logs -n gw-01 hello --since 10m", "orchctl logs -l app=web -f --tail 5"],
            ["@containers"]),
        new("exec", "Containers", "exec CONTAINER [-i] [-t] [-n NODE] -- COMMAND [ARG…]",
            "run a command in a container; streams its output as it runs and exits with its exit code (Ctrl-C kills it); -it for a shell",
            [new("-i|--stdin", null, "send orchctl's stdin to the command (without: it reads end-of-file)"),
             new("-t|--tty", null, "run it on a terminal that follows this one's size; this terminal goes raw (Ctrl-C goes to the command) until it ends"),
             NodeFind],
            ["orchctl exec web-0 -- cat /etc/hostname", "orchctl exec -it web-0 -- sh", "tar -cf - dir | orchctl exec -i web-0 -- tar -xf - -C /tmp",
             "orchctl exec -n gw-01 hello -- sh -c 'wget -qO- localhost'"],
            ["@containers"]),
        new("attach", "Containers", "attach CONTAINER [-i] [-t] [--detach-keys KEYS] [-n NODE]",
            "join a running container's own process: its output from now on, with -i your input, with -t its terminal; ctrl-p,ctrl-q leaves it running",
            [new("-i|--stdin", null, "send orchctl's stdin to the process's stdin (the workload needs stdin: true)"),
             new("-t|--tty", null, "its terminal (the workload needs tty: true) follows this one's size; with -i this terminal goes raw (Ctrl-C goes to the process)"),
             new("--detach-keys", "KEYS", "the keys that detach, as docker's: a,b letters, ctrl-LETTER, ctrl-@ [ \\ ] ^ _, DEL, comma-separated (default ctrl-p,ctrl-q; \"\" turns it off)", "ctrl-p,ctrl-q"),
             NodeFind],
            ["orchctl attach -it console-0", "orchctl attach web-0", "orchctl attach -it console-0 --detach-keys=ctrl-a,d", "echo reload | orchctl attach -i repl-0"],
            ["@containers"],
            "the detach keys (or Ctrl-C, when the keys do not go to the process) leave the container running: exit 0, after \"read escape sequence\" for the keys. When its process exits, attach exits with its exit code. The end of orchctl's stdin stops the input; the container's stdin stays open for the next attach. Output written before attaching is in orchctl logs."),
        new("cp", "Containers", "cp CONTAINER:PATH DEST | cp SRC CONTAINER:PATH [-a] [-n NODE]",
            "copy files and directories out of or into a running container (a tar stream over NATS; - for stdin or stdout)",
            [new("-a|--archive", null, "into a container: keep the files' owners (uid:gid); by default they belong to the container's root"), NodeFind],
            ["orchctl cp web-0:/etc/nginx/nginx.conf ./nginx.conf", "orchctl cp ./site web-0:/usr/share/nginx/html", "orchctl cp web-0:/var/log - | tar -tvf -",
             "tar -cf - config | orchctl cp - web-0:/etc/app"],
            ["@containers"],
            "paths in the container are resolved in its own root (its symlinks cannot lead out); an existing directory receives the copy, any other path is what it is copied to (as docker cp). Device files, fifos and sockets are not copied."),
        new("port-forward", "Containers", "port-forward CONTAINER|NODE/CONTAINER|node/NODE [LOCAL:]REMOTE… [--address IP] [-n NODE]",
            "forward local TCP ports to a container's ports (or a node's own) through NATS; Ctrl-C ends",
            [new("--address", "IP", "the local address to listen on (default 127.0.0.1)"), NodeFind],
            ["orchctl port-forward web-0 8080:80", "orchctl port-forward gw-01/db-0 5432", "orchctl port-forward node/gw-01 9100:9100", "orchctl port-forward web-0 :80"],
            ["@containers"],
            "each connection is its own session on the node, with flow control both ways; reaching a node's own port needs that port published by one of its containers, or its policy.forward_host_ports"),
        new("run", "Containers", "run -n NODE -f FILE", "run the workloads of a manifest file (YAML or JSON) on one node",
            [Node, new("-f|--file", "FILE", "workload manifest", "@files")], ["orchctl run -n gw-01 -f examples/hello-node.yaml"], []),
        new("ps", "Containers", "ps -n NODE [-o FORMAT] [-l SELECTOR]", "one node's containers (every node's: get containers)", [Node, Output, Selector],
            ["orchctl ps -n gw-01", "orchctl ps -n gw-01 -l app=web -o wide", "orchctl ps -n gw-01 -o json"], []),
        new("inspect", "Containers", "inspect CONTAINER [-n NODE]", "a container's status and spec, as JSON", [NodeFind], ["orchctl inspect web-0"], ["@containers"]),
        new("stats", "Containers", "stats -n NODE [CONTAINER]", "CPU, memory, pids and restarts of a node's containers", [Node], ["orchctl stats -n gw-01"], ["@containers"]),
        new("stop", "Containers", "stop CONTAINER [-n NODE]", "stop a container (it stays stopped until start)", [NodeFind], ["orchctl stop -n gw-01 hello"], ["@containers"]),
        new("start", "Containers", "start CONTAINER [-n NODE]", "start a stopped container", [NodeFind], ["orchctl start -n gw-01 hello"], ["@containers"]),
        new("restart", "Containers", "restart CONTAINER [-n NODE]", "restart a container", [NodeFind], ["orchctl restart web-0"], ["@containers"]),
        new("rm", "Containers", "rm CONTAINER [-n NODE]", "remove a container run with `run` (a deployment's replicas: scale or delete the deployment)", [NodeFind], ["orchctl rm -n gw-01 hello"], ["@containers"]),
        new("status", "Containers", "status -n NODE", "a node's capacity, requests and usage", [Node], ["orchctl status -n gw-01"], []),
        new("images", "Images", "images -n NODE", "one node's images, the store each is in (orchd, or containerd on a containerd node) and the containers using them (every node's: get images)", [Node], ["orchctl images -n gw-01"], []),
        new("pull", "Images", "pull -n NODE REFERENCE", "pull an image onto a node (a registry, or nats:NAME from the fleet's bucket), showing its progress", [Node],
            ["orchctl pull -n gw-01 registry.local:5000/team/app:1.4"], []),
        new("rmi", "Images", "rmi -n NODE IMAGE", "remove an image no workload uses", [Node], ["orchctl rmi -n gw-01 team/app:1.3"], []),
        new("image-gc", "Images", "image-gc -n NODE", "free the blobs and layers nothing uses", [Node], ["orchctl image-gc -n gw-01"], []),
        new("secret", "Secrets", "secret create|update NAME --from-file FILE|--from-literal VALUE --sign-key SEED | secret sync [NAME…] | secret ls | secret rm NAME",
            "fleet secrets, sealed to each node's own key (the hub keeps only ciphertext); update makes a new version and rolls out the deployments that use it; sync seals them for nodes that joined later",
            [new("--from-file", "FILE", "the value: a file's bytes (- for stdin)", "@files"), new("--from-literal", "VALUE", "the value as given"), SignKey, ListOutput],
            ["orchctl secret create db-password --from-file ./db.txt --sign-key op.nk", "orchctl secret update db-password --from-file ./new.txt --sign-key op.nk", "orchctl secret sync --sign-key op.nk", "orchctl secret ls"], ["create update sync ls rm"]),
        new("configmap", "Secrets", "configmap create|update NAME --from-file FILE|--from-literal VALUE [--sign-key SEED] | configmap ls | configmap rm NAME",
            "fleet configs: files that are not secret, stored once in clear (signed with --sign-key; nodes with trusted keys need it); update rolls out the deployments that use it",
            [new("--from-file", "FILE", "the value: a file's bytes (- for stdin)", "@files"), new("--from-literal", "VALUE", "the value as given"), SignKey, ListOutput],
            ["orchctl configmap create mosquitto-conf --from-file ./mosquitto.conf --sign-key op.nk", "orchctl configmap ls"], ["create update ls rm"]),
        new("env", "Secrets", "env set KEY=VALUE… | env unset KEY… (--fleet | -l KEY=VALUE | --device NODE) [--deployment NAME] | env ls [--device NODE]",
            "environment variables for the fleet, the nodes with a label or one device (balena's fleet and device variables), over the template's env: node beats label beats fleet, a deployment's own beats the general ones; the containers whose variables change are restarted. Not secret: use orchctl secret for those",
            [new("--fleet", null, "every node"), new("-l|--label", "KEY=VALUE", "the nodes with this label"), new("--device", "NODE", "one node (ls: the variables that reach this node)", "@nodes"),
             new("--deployment", "NAME", "only that deployment's containers", "@deployments"), ListOutput],
            ["orchctl env set API_URL=https://hub.example --fleet", "orchctl env set SITE_ID=lab-1 -l site=lab", "orchctl env set SITE_ID=gw-07 --device gw-07", "orchctl env unset SITE_ID --device gw-07", "orchctl env ls --device gw-07"], ["set unset ls"]),
        new("keys", "Signing", "keys create -o FILE | keys show FILE",
            "a signing key: the seed goes to FILE (mode 0600), the public key (U…) to the nodes' fleet.trusted_keys",
            [new("-o|--output", "FILE", "where the new seed goes", "@files")], ["orchctl keys create -o op.nk", "orchctl keys show op.nk"], ["create show"]),
        new("sign", "Signing", "sign -f FILE --key SEED [-o OUT] [--env-file FILE] [--image-map SVC=IMAGE]", "sign a file's deployments for `apply -f` anywhere",
            [new("-f|--file", "FILE", "deployments to sign", "@files"), new("--key", "SEED", "the nkey seed file (env ORCH_SIGN_KEY)", "@files"), new("-o|--output", "FILE", "write here instead of stdout", "@files"), EnvFile, ImageMap],
            ["orchctl sign -f web.yaml --key op.nk -o web.signed.yaml"], []),
        new("identity", "Identity", "identity init DIR [--name NAME] [--trusted-key U…] | identity user create NAME --role viewer|deployer|admin|leaf -o FILE [--ttl 30d]",
            "the fleet's key hierarchy (made offline, once) and operators' credentials in a role",
            [new("--name", "NAME", "init: the operator's and the account's name"), new("--trusted-key", "U…", "init: a manifest-signing public key handed to enrolled nodes (repeatable)"),
             new("--role", "ROLE", "user create: viewer (reads), deployer (deployments, rollouts, logs, exec), admin (everything, nodes, tokens, revocation) or leaf (a site's leaf server)", "viewer deployer admin leaf"),
             new("-o|--output", "FILE", "user create: where the credentials go (mode 0600)", "@files"), new("--ttl", "DURATION", "user create: how long they are valid (default 30d)")],
            ["orchctl identity init /etc/orchestrator/identity --trusted-key UD…", "orchctl identity user create alice --role deployer -o alice.creds"],
            ["init user", "create"],
            "init writes offline/ (the root seeds: move them off the machine), service/ (for `orchd identity serve`), server/nats-server.conf (include it in each hub server) and admin.creds. user create asks the identity service; the user's seed is made here and never sent."),
        new("node", "Identity", "node token create [--labels k=v,…] [--uses N] [--ttl 24h] [--scheduler] | node token revoke ID | node revoke NODE",
            "enrolment tokens for new devices (orchd enroll URL TOKEN), and revoking a device's credentials",
            [new("--labels", "K=V,…", "token: labels the enrolled devices get"), new("--uses", "N", "token: how many devices it enrols (default 1)"),
             new("--ttl", "DURATION", "token: how long it is valid (default 24h)"), new("--scheduler", null, "token: devices may take the scheduler lease")],
            ["orchctl node token create --labels site=lab,role=camera --uses 1 --ttl 24h", "orchctl node token revoke k3xq7m2a9pzb4c6d", "orchctl node revoke gw-17"],
            ["token revoke", "create revoke @nodes"],
            "a revoked device's connections are closed at once and it cannot connect again; the scheduler takes it for lost and moves its replicas; it shows as revoked in get nodes."),
        new("config", "Settings", "config view | get-contexts | current-context | use-context NAME | set-context NAME [--server URL] [--creds FILE] …",
            "the contexts in ~/.config/orchestrator/config.yaml (ORCH_CONFIG to use another file) and the settings in effect",
            [new("--current", null, "set-context: make it the current context too")],
            ["orchctl config view", "orchctl config set-context lab --server nats://127.0.0.1:4222 --node demo-1 --current", "orchctl config use-context prod",
             "orchctl --context prod get nodes"],
            ["view get-contexts current-context use-context set-context", "@contexts"],
            "settings come from flags, then ORCH_* variables, then the current context, then defaults; `config view` shows where each one came from."),
        new("completion", "Settings", "completion bash|zsh|fish", "a shell completion script (commands, flags, node/deployment/container names)", [],
            ["source <(orchctl completion bash)", "orchctl completion zsh > \"${fpath[1]}/_orchctl\"", "orchctl completion fish > ~/.config/fish/completions/orchctl.fish"],
            ["bash zsh fish"]),
        new("help", "Settings", "help [COMMAND]", "this help, or one command's", [], ["orchctl help apply"], ["@commands"]),
    ];

    public static CommandSpec? Find(string name) => All.FirstOrDefault(c => c.Name == name);

    public static string Overview()
    {
        var text = new StringBuilder();
        text.Append("orchctl: drive an Orchestrator fleet over NATS.\n\nUsage: orchctl [global flags] COMMAND [flags] [args]\n");
        foreach (var group in Groups)
        {
            text.Append('\n').Append(group).Append(":\n");
            foreach (var command in All.Where(c => c.Group == group))
            {
                // At least two spaces after the longest name (port-forward), as the flags have.
                text.Append("  ").Append(command.Name.PadRight(Math.Max(12, All.Max(c => c.Name.Length) + 2))).Append(command.Summary).Append('\n');
            }
        }
        text.Append("\nGlobal flags (anywhere on the line; flags > ORCH_* variables > the config file's context > defaults):\n");
        text.Append(ConnectionFlags.Help).Append('\n');
        text.Append("  -h, --help".PadRight(32)).Append("help for orchctl or a command (also: orchctl help COMMAND)\n");
        text.Append("""

            Exit codes: 0 ok, 1 failure, 2 usage, 3 timeout or NATS/node unreachable; exec exits with the command's code, attach with the container's when it exits.

            Examples:
              orchctl get nodes
              orchctl apply -f examples/web-deployment.yaml --dry-run
              orchctl rollout status web -w
              orchctl logs web-0 -f
              orchctl exec web-0 -- cat /etc/hostname

            `orchctl COMMAND --help` shows a command's flags and examples; docs/orchctl.md has them all.

            """);
        return text.ToString();
    }

    public static string HelpFor(CommandSpec command)
    {
        var text = new StringBuilder();
        text.Append($"orchctl {command.Name}: {command.Summary}\n\nUsage:\n  orchctl {command.Usage}\n");
        if (command.Details is { } details)
        {
            text.Append('\n').Append(char.ToUpperInvariant(details[0])).Append(details[1..]).Append('\n');
        }
        if (command.Flags.Length > 0)
        {
            text.Append("\nFlags:\n");
            foreach (var flag in command.Flags)
            {
                var names = string.Join(", ", flag.Each) + (flag.Value is null ? "" : " " + flag.Value);
                text.Append("  ").Append(names.PadRight(26)).Append(' ').Append(flag.Help).Append('\n');
            }
        }
        text.Append("\nExamples:\n");
        foreach (var example in command.Examples)
        {
            text.Append("  ").Append(example).Append('\n');
        }
        text.Append("\nGlobal flags: --server, --creds, --nkey, --tls-ca, --tls-cert, --tls-key, --context, --timeout, --no-color (orchctl --help).\n");
        text.Append("Exit codes: 0 ok, 1 failure, 2 usage, 3 timeout or unreachable.\n");
        return text.ToString();
    }
}
