using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Daemon.Tests;

/// <summary>Runs the published orchctl as an operator would: arguments, environment, stdin; stdout and stderr apart.</summary>
internal static class Orchctl
{
    public sealed record Result(int Code, string Out, string Err)
    {
        public string All => Out + Err;
    }

    /// <summary>
    /// orchctl with a clean environment: no ORCH_* variable from the runner (ORCH_CONFIG points at a
    /// file that does not exist unless <paramref name="env"/> says otherwise), stdout not a terminal.
    /// </summary>
    public static async Task<Result> RunAsync(IEnumerable<string> args, IReadOnlyDictionary<string, string?>? env = null, string? stdin = null, string? program = null)
    {
        var psi = new ProcessStartInfo(program ?? Repo.Binary("orchctl"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("ORCH", StringComparison.Ordinal) && k != "ORCH_BIN_DIR" || k is "NO_COLOR").ToList())
        {
            psi.Environment.Remove(key);
        }
        psi.Environment["ORCH_CONFIG"] = "/nonexistent/orchctl-config.yaml";
        foreach (var (key, value) in env ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                psi.Environment.Remove(key);
            }
            else
            {
                psi.Environment[key] = value;
            }
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }
        process.StandardInput.Close();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"orchctl {string.Join(' ', args)} did not exit within 90 s; output so far: {(stdout.IsCompleted ? stdout.Result : "")}");
        }
        return new Result(process.ExitCode, await stdout, await stderr);
    }

    public static Task<Result> RunAsync(params string[] args) => RunAsync(args, null);

    /// <summary>orchctl left running (get -w, logs -f) with the clean environment of <see cref="RunAsync(IEnumerable{string}, IReadOnlyDictionary{string, string?}?, string?, string?)"/>.</summary>
    public static DaemonProcess Start(params string[] args)
    {
        var env = Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Where(k => k.StartsWith("ORCH", StringComparison.Ordinal) && k != "ORCH_BIN_DIR" || k is "NO_COLOR")
            .ToDictionary(k => k, _ => (string?)null);
        env["ORCH_CONFIG"] = "/nonexistent/orchctl-config.yaml";
        return DaemonProcess.Start(Repo.Binary("orchctl"), args, env);
    }

    /// <summary>Ages and heartbeat times change from run to run: one placeholder each (the rest of a golden file is exact).</summary>
    public static string Normalise(string text, string? tempDir = null)
    {
        text = Regex.Replace(text, @"\b\d+(\.\d+)?[smhd] ago\b", "<age> ago");
        text = Regex.Replace(text, @"(""heartbeatAgeSeconds"": )[0-9.eE+-]+", "$1<age>");
        text = Regex.Replace(text, @"(heartbeatAgeSeconds: )\S+", "$1<age>");
        text = Regex.Replace(text, @"nats://127\.0\.0\.1:\d+", "nats://<server>");
        text = Regex.Replace(text, @"(""?changedAt""?: ""?)[0-9T:.+Z-]+", "$1<time>");
        if (tempDir is not null)
        {
            text = text.Replace(tempDir, "<dir>", StringComparison.Ordinal);
        }
        return text;
    }

    /// <summary>A table again aligned after <see cref="Normalise"/> changed cell widths (cells never hold two spaces in a row).</summary>
    public static string Realign(string table)
    {
        var rows = table.TrimEnd('\n').Split('\n').Select(l => Regex.Split(l, " {2,}")).ToList();
        var columns = rows.Max(r => r.Length);
        var widths = Enumerable.Range(0, columns).Select(i => rows.Where(r => r.Length > i).Max(r => r[i].Length)).ToArray();
        return string.Join("\n", rows.Select(r => string.Join("  ", r.Select((c, i) => i == r.Length - 1 ? c : c.PadRight(widths[i]))).TrimEnd())) + "\n";
    }

    /// <summary>
    /// Compares with tests/orchd.Tests/golden/NAME, column padding aside (an age one digit longer
    /// widens a column; <see cref="AssertAligned"/> checks alignment). ORCH_UPDATE_GOLDEN=1 rewrites the files.
    /// </summary>
    public static void AssertGolden(string name, string actual)
    {
        var path = Path.Combine(Repo.Root, "tests", "orchd.Tests", "golden", name);
        if (Environment.GetEnvironmentVariable("ORCH_UPDATE_GOLDEN") == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, actual);
            return;
        }
        Assert.True(File.Exists(path), $"golden file {path} is missing; run the test with ORCH_UPDATE_GOLDEN=1, review and commit it. Output:\n{actual}");
        static string Squeeze(string s) => Regex.Replace(s.Replace("\r\n", "\n", StringComparison.Ordinal), " {2,}", "  ").TrimEnd();
        var expected = Squeeze(File.ReadAllText(path));
        Assert.True(expected == Squeeze(actual), $"{name} differs from the golden file (ORCH_UPDATE_GOLDEN=1 rewrites it):\n--- expected\n{File.ReadAllText(path)}\n--- actual\n{actual}");
    }

    /// <summary>Every row's cells start where the header's columns start.</summary>
    public static void AssertAligned(string table)
    {
        var lines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var header = lines[0];
        var starts = Regex.Matches(header, @"(?<=  )\S").Select(m => m.Index).ToList();
        foreach (var line in lines.Skip(1))
        {
            foreach (var start in starts.Where(s => s < line.Length))
            {
                Assert.True(line[start - 1] == ' ' && line[start] != ' ', $"column at {start} is not aligned:\n{header}\n{line}");
            }
        }
    }
}
