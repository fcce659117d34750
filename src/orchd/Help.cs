using System.Text;
using Orchestrator.Daemon.Configuration;

namespace Orchestrator.Daemon;

internal static class Help
{
    public static string Text()
    {
        var text = new StringBuilder();
        text.AppendLine($"{BuildInfo.Describe("orchd")}");
        text.AppendLine("The Orchestrator node daemon: runs containers on this host and joins the fleet over NATS.");
        text.AppendLine();
        text.AppendLine("Usage:");
        text.AppendLine("  orchd [flags]                 run the daemon (as a systemd Type=notify service, or in the foreground)");
        text.AppendLine("  orchd --check-config [flags]  load the configuration, print the effective settings, exit");
        text.AppendLine("  orchd image COMMAND ...       the node's images: list, inspect, pull, push --nats, import, export, rm, gc");
        text.AppendLine("  orchd teardown [flags]        with orchd stopped: stop this node's containers, remove its bridge, nft table,");
        text.AppendLine("                                cgroups and mounts (what `dpkg -r` does); the state dir is kept");
        text.AppendLine("  orchd enroll URL TOKEN        join the fleet with a one-time token: this device's own key, its credentials");
        text.AppendLine("  orchd identity serve --dir D  the fleet's identity service: tokens, enrolment, renewal, revocation");
        text.AppendLine("  orchd --version | --help");
        text.AppendLine();
        text.AppendLine("Every setting can come from the config file (YAML), an ORCHD_* environment variable or a");
        text.AppendLine("flag; flags win over variables, variables over the file, the file over the defaults.");
        text.AppendLine();
        text.AppendLine("Flags:");
        Row(text, "--config FILE", "config file", $"env {ConfigLoader.ConfigEnv}", OrchdConfig.DefaultConfigFile + " (if it exists)");
        foreach (var s in ConfigSchema.All)
        {
            var repeat = s.Shape == SettingShape.Scalar ? "" : " (repeatable)";
            Row(text, $"{s.Flag} {s.ValueName}", s.Help + repeat, $"file: {s.Key}  env: {s.Env}", s.Default);
        }
        text.AppendLine();
        text.AppendLine("Exit codes: 0 stopped cleanly, 1 failed while running, 2 bad command line,");
        text.AppendLine("78 bad configuration or unusable state dir (systemd does not restart it: fix and start).");
        text.AppendLine();
        text.AppendLine("The runtime's runc-compatible command line is orch-runc, a binary of its own.");
        return text.ToString();
    }

    private static void Row(StringBuilder text, string flag, string help, string where, string @default)
    {
        text.AppendLine($"  {flag,-28} {help}");
        text.AppendLine($"  {"",-28} {where}  default: {@default}");
    }

    public static string EffectiveConfig(OrchdConfig config)
    {
        // Printed as YAML that orchd itself accepts, so `--check-config > orchd.yaml` round-trips.
        var text = new StringBuilder();
        text.AppendLine($"# effective configuration (file: {config.ConfigFile ?? "none"})");
        string? section = null;
        foreach (var s in ConfigSchema.All)
        {
            var dot = s.Key.IndexOf('.', StringComparison.Ordinal);
            var indent = "";
            var key = s.Key;
            if (dot > 0)
            {
                var sectionName = s.Key[..dot];
                if (section != sectionName)
                {
                    text.AppendLine($"{sectionName}:");
                    section = sectionName;
                }
                indent = "  ";
                key = s.Key[(dot + 1)..];
            }
            var value = s.Describe(config);
            if (s.Secret && value.Length > 0)
            {
                text.AppendLine($"{indent}# {key}: (set, not shown)");
                continue;
            }
            switch (s.Shape)
            {
                case SettingShape.Map when config.Labels.Count > 0:
                    text.AppendLine($"{indent}{key}:");
                    foreach (var (k, v) in config.Labels)
                    {
                        text.AppendLine($"{indent}  {Quote(k)}: {Quote(v)}");
                    }
                    break;
                case SettingShape.Map:
                    text.AppendLine($"{indent}{key}: {{}}");
                    break;
                case SettingShape.List when value.Length == 0:
                    text.AppendLine($"{indent}{key}: []");
                    break;
                case SettingShape.List:
                    text.AppendLine($"{indent}{key}:");
                    foreach (var item in value.Split(','))
                    {
                        text.AppendLine($"{indent}  - {Quote(item)}");
                    }
                    break;
                default:
                    text.AppendLine(value.Length == 0 ? $"{indent}# {key}: (not set)" : $"{indent}{key}: {Quote(value)}");
                    break;
            }
        }
        return text.ToString();
    }

    private static string Quote(string value) => $"\"{value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)}\"";
}
