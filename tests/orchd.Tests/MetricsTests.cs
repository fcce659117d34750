using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using NATS.Client.Core;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Daemon.Metrics;
using Orchestrator.Daemon.Tests.Node;

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// A strict reader of the Prometheus text exposition format 0.0.4: it rejects what Prometheus'
/// own parser rejects and what it merely tolerates (a family without HELP/TYPE, samples of one
/// family split apart, a series twice, bad escapes, an empty line).
/// </summary>
public static partial class Exposition
{
    public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

    public sealed record Family(string Name, string Type, string Help, List<Sample> Samples);

    [GeneratedRegex("^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    private static partial Regex MetricName();

    [GeneratedRegex("^[a-zA-Z_][a-zA-Z0-9_]*$")]
    private static partial Regex LabelName();

    public static Dictionary<string, Family> Parse(string text)
    {
        Assert.EndsWith("\n", text, StringComparison.Ordinal);
        var families = new Dictionary<string, Family>(StringComparer.Ordinal);
        var series = new HashSet<string>(StringComparer.Ordinal);
        Family? current = null;
        string? pendingHelp = null, pendingHelpName = null;
        var lines = text[..^1].Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var where = $"line {i + 1} '{line}'";
            Assert.False(line.Length == 0, $"{where}: empty line");
            if (line.StartsWith("# HELP ", StringComparison.Ordinal))
            {
                var rest = line["# HELP ".Length..];
                var space = rest.IndexOf(' ', StringComparison.Ordinal);
                pendingHelpName = space < 0 ? rest : rest[..space];
                pendingHelp = space < 0 ? "" : Unescape(rest[(space + 1)..], quotes: false, where);
                Assert.Matches(MetricName(), pendingHelpName);
                Assert.False(families.ContainsKey(pendingHelpName), $"{where}: second HELP for {pendingHelpName}");
                continue;
            }
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                Assert.True(parts.Length == 4, $"{where}: TYPE wants a name and a type");
                Assert.True(parts[2] == pendingHelpName, $"{where}: TYPE must follow the family's HELP");
                Assert.Contains(parts[3], new[] { "counter", "gauge", "histogram", "summary", "untyped" });
                Assert.False(families.ContainsKey(parts[2]), $"{where}: second TYPE for {parts[2]}");
                current = new Family(parts[2], parts[3], pendingHelp!, []);
                families.Add(current.Name, current);
                pendingHelpName = null;
                continue;
            }
            Assert.False(line.StartsWith('#'), $"{where}: unexpected comment");
            Assert.True(current is not null && pendingHelpName is null, $"{where}: a sample before its family's HELP and TYPE");
            var sample = ParseSample(line, where);
            Assert.True(sample.Name == current!.Name, $"{where}: a sample of {sample.Name} inside family {current.Name} (samples of a family must be together, after its TYPE)");
            if (current.Type == "counter")
            {
                Assert.EndsWith("_total", sample.Name, StringComparison.Ordinal);
                Assert.True(sample.Value >= 0, $"{where}: a negative counter");
            }
            var key = sample.Name + "{" + string.Join(",", sample.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}")) + "}";
            Assert.True(series.Add(key), $"{where}: series {key} twice");
            current.Samples.Add(sample);
        }
        Assert.All(families.Values, f => Assert.True(f.Samples.Count > 0, $"family {f.Name} has no samples"));
        return families;
    }

    private static Sample ParseSample(string line, string where)
    {
        var i = 0;
        while (i < line.Length && line[i] is not ('{' or ' '))
        {
            i++;
        }
        var name = line[..i];
        Assert.Matches(MetricName(), name);
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (line[i] != '}')
            {
                var eq = line.IndexOf('=', i);
                var label = line[i..eq];
                Assert.Matches(LabelName(), label);
                Assert.False(label.StartsWith("__", StringComparison.Ordinal), $"{where}: reserved label {label}");
                Assert.True(line[eq + 1] == '"', $"{where}: label value not quoted");
                var value = new StringBuilder();
                var j = eq + 2;
                for (; line[j] != '"'; j++)
                {
                    if (line[j] == '\\')
                    {
                        j++;
                        value.Append(line[j] switch
                        {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            _ => throw new Xunit.Sdk.XunitException($"{where}: bad escape \\{line[j]}"),
                        });
                    }
                    else
                    {
                        value.Append(line[j]);
                    }
                }
                Assert.True(labels.TryAdd(label, value.ToString()), $"{where}: label {label} twice");
                i = j + 1;
                if (line[i] == ',')
                {
                    i++;
                }
            }
            i++;
        }
        Assert.True(i < line.Length && line[i] == ' ', $"{where}: no space before the value");
        var valueText = line[(i + 1)..];
        Assert.DoesNotContain(' ', valueText); // no timestamps from orchd
        var number = valueText switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            _ => double.Parse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture),
        };
        return new Sample(name, labels, number);
    }

    private static string Unescape(string text, bool quotes, string where)
    {
        var result = new StringBuilder();
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] != '\\')
            {
                result.Append(text[i]);
                continue;
            }
            i++;
            result.Append(text[i] switch
            {
                '\\' => '\\',
                'n' => '\n',
                '"' when quotes => '"',
                _ => throw new Xunit.Sdk.XunitException($"{where}: bad escape in HELP"),
            });
        }
        return result.ToString();
    }

    public static double Value(this Dictionary<string, Family> families, string name, params string[] labels)
    {
        Assert.True(families.TryGetValue(name, out var family), $"no metric family {name}; families: {string.Join(", ", families.Keys)}");
        var wanted = Enumerable.Range(0, labels.Length / 2).Select(i => (labels[2 * i], labels[2 * i + 1])).ToArray();
        var match = family.Samples.Where(s => wanted.All(w => s.Labels.TryGetValue(w.Item1, out var v) && v == w.Item2)).ToList();
        Assert.True(match.Count == 1, $"{name}{{{string.Join(",", labels)}}}: {match.Count} samples match; samples: {string.Join("; ", family.Samples.Select(s => string.Join(",", s.Labels.Select(l => $"{l.Key}={l.Value}")) + " " + s.Value))}");
        return match[0].Value;
    }
}

public sealed class MetricsTests
{
    [Fact]
    public void Writer_escapes_label_values_and_help_and_groups_a_family()
    {
        var w = new PrometheusWriter();
        w.Family("orch_test_total", MetricType.Counter, "a help with \\ and\na newline")
            .Sample(3, "path", "C:\\dir \"quoted\"\nnext", "node", "n1")
            .Sample(1.5, "path", "plain", "node", "n1");
        w.Family("orch_test_gauge", MetricType.Gauge, "g").Sample(double.NaN).Sample(double.PositiveInfinity, "x", "y");
        var text = w.ToString();
        Assert.Equal(
            "# HELP orch_test_total a help with \\\\ and\\na newline\n# TYPE orch_test_total counter\n" +
            "orch_test_total{path=\"C:\\\\dir \\\"quoted\\\"\\nnext\",node=\"n1\"} 3\norch_test_total{path=\"plain\",node=\"n1\"} 1.5\n" +
            "# HELP orch_test_gauge g\n# TYPE orch_test_gauge gauge\norch_test_gauge NaN\norch_test_gauge{x=\"y\"} +Inf\n", text);
        var parsed = Exposition.Parse(text);
        Assert.Equal("C:\\dir \"quoted\"\nnext", parsed["orch_test_total"].Samples[0].Labels["path"]);
        Assert.Equal("a help with \\ and\na newline", parsed["orch_test_total"].Help);
    }

    [Fact]
    public void Writer_refuses_a_series_twice_a_family_twice_and_bad_names()
    {
        var w = new PrometheusWriter();
        w.Family("a_total", MetricType.Counter, "a").Sample(1, "x", "1");
        Assert.Throws<InvalidOperationException>(() => w.Sample(2, "x", "1"));
        Assert.Throws<InvalidOperationException>(() => w.Family("a_total", MetricType.Counter, "again"));
        Assert.Throws<ArgumentException>(() => w.Family("1bad", MetricType.Gauge, "digit first"));
        Assert.Throws<ArgumentException>(() => w.Family("ok_name", MetricType.Gauge, "bad label").Sample(1, "__reserved", "v"));
        Assert.Throws<ArgumentException>(() => new PrometheusWriter().Family("b", MetricType.Gauge, "b").Sample(1, "odd"));
    }

    [Theory]
    [InlineData("9464", "127.0.0.1:9464")]
    [InlineData("localhost:9100", "127.0.0.1:9100")]
    [InlineData("0.0.0.0:9464", "0.0.0.0:9464")]
    [InlineData("[::1]:9464", "[::1]:9464")]
    [InlineData("none", null)]
    public void Metrics_listen_takes_a_port_on_loopback_or_an_address(string value, string? expected)
    {
        var config = ConfigLoader.Load(CommandLine.Parse(["--config", "/dev/null", "--metrics-listen", value]), _ => null);
        Assert.Equal(expected, config.MetricsListen);
    }

    [Fact]
    public void Metrics_are_off_by_default_and_a_bad_address_is_one_error_with_the_fix()
    {
        var defaults = ConfigLoader.Load(CommandLine.Parse(["--config", "/dev/null"]), _ => null);
        Assert.Null(defaults.MetricsListen);
        Assert.False(defaults.MetricsNats);
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.Load(CommandLine.Parse(["--config", "/dev/null", "--metrics-listen", "metrics.local"]), _ => null));
        Assert.Equal("flag --metrics-listen: metrics.listen: 'metrics.local' is not a listen address; use a port (9464, on 127.0.0.1), an address and port (127.0.0.1:9464, [::1]:9464) or none", error.Message);
    }
}

/// <summary>A real node with a container, scraped over HTTP and over NATS.</summary>
[Collection(NodeTests.Collection)]
[Trait("Category", "Privileged")]
public sealed class MetricsScrapeTests
{
    private static async Task<(string Head, string Body)> HttpAsync(int port, string request)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", port);
        await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None);
        var response = new MemoryStream();
        var buffer = new byte[65536];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None)) > 0)
        {
            response.Write(buffer, 0, n);
        }
        var text = Encoding.UTF8.GetString(response.ToArray());
        var split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        return (text[..split], text[(split + 4)..]);
    }

    [Fact(Timeout = 180_000)]
    public async Task Node_and_container_metrics_over_http_and_nats_parse_as_strict_exposition()
    {
        var port = FreePort.Next();
        await using var node = await NodeHost.StartAsync(extraArgs: ["--metrics-listen", port.ToString(CultureInfo.InvariantCulture), "--metrics-nats", "true"]);
        await node.Daemon.WaitForLogAsync($"metrics: Prometheus text at http://127.0.0.1:{port}/metrics", TimeSpan.FromSeconds(10));
        await node.Client.RunAsync(NodeHost.Sh("web", "while true; do :; done", w =>
        {
            w.StopGracePeriodSeconds = 0;
            w.Resources = new() { Memory = "32Mi", Cpu = "250m" };
        }));
        await node.WaitForAsync("web", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(30), "web running");
        await Task.Delay(300); // some CPU time to count

        var (head, body) = await HttpAsync(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", head, StringComparison.Ordinal);
        Assert.Contains("Content-Type: text/plain; version=0.0.4; charset=utf-8", head, StringComparison.Ordinal);
        Assert.Contains($"Content-Length: {Encoding.UTF8.GetByteCount(body)}", head, StringComparison.Ordinal);
        var metrics = Exposition.Parse(body);

        var n = node.NodeName;
        Assert.Equal(1, metrics.Value("orchd_build_info", "node", n, "runtime", "native"));
        Assert.Equal(1, metrics.Value("orchd_nats_connected", "node", n));
        Assert.InRange(metrics.Value("orchd_fleet_scheduler", "node", n), 0, 1);
        Assert.Equal(Environment.ProcessorCount * 1000, metrics.Value("orchd_node_cpu_capacity_millicores", "node", n));
        Assert.Equal(250, metrics.Value("orchd_node_cpu_requested_millicores", "node", n));
        Assert.Equal(32 << 20, metrics.Value("orchd_node_memory_requested_bytes", "node", n));
        Assert.Equal(1, metrics.Value("orchd_node_containers", "node", n, "state", "running"));
        Assert.Equal(0, metrics.Value("orchd_node_containers", "node", n, "state", "exited"));
        Assert.Equal(1, metrics.Value("orchd_container_info", "container", "web", "image", NodeHost.Image, "state", "running"));
        Assert.Equal(0, metrics.Value("orchd_container_restarts_total", "container", "web"));
        Assert.Equal(32 << 20, metrics.Value("orchd_container_memory_limit_bytes", "container", "web"));
        Assert.InRange(metrics.Value("orchd_container_memory_bytes", "container", "web"), 1, 32 << 20);
        Assert.InRange(metrics.Value("orchd_container_pids", "container", "web"), 1, 64);
        Assert.True(metrics.Value("orchd_container_cpu_seconds_total", "container", "web") > 0);
        Assert.InRange(metrics.Value("orchd_resident_memory_bytes", "node", n), 1 << 20, 512L << 20);
        Assert.All(metrics.Values.SelectMany(f => f.Samples), s => Assert.Equal(n, s.Labels["node"]));

        // The Grafana dashboard asks only for metrics orchd exports.
        using var dashboard = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Repo.Root, "packaging", "grafana", "orchestrator-fleet.json")));
        var queried = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray()).Select(t => t.GetProperty("expr").GetString()!)
            .Concat([dashboard.RootElement.GetProperty("templating").GetProperty("list")[1].GetProperty("definition").GetString()!])
            .SelectMany(e => Regex.Matches(e, "orchd_[a-z_]+").Select(m => m.Value)).Distinct().ToList();
        Assert.NotEmpty(queried);
        Assert.All(queried, name => Assert.True(metrics.ContainsKey(name), $"packaging/grafana/orchestrator-fleet.json queries {name}, which orchd does not export"));

        // The same text on NATS, for a fleet-wide scraper that asks node by node.
        await using var nats = new NatsConnection(new NatsOpts { Url = node.Nats!.Url });
        var reply = await nats.RequestAsync<byte[], byte[]>(MetricsService.Subject(n), [], replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(10) });
        var overNats = Exposition.Parse(Encoding.UTF8.GetString(reply.Data!));
        Assert.Equal(metrics.Keys.Order(StringComparer.Ordinal), overNats.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(1, overNats.Value("orchd_container_info", "container", "web", "image", NodeHost.Image, "state", "running"));

        // Only /metrics, only GET/HEAD; anything else one short answer, and the listener carries on.
        Assert.StartsWith("HTTP/1.1 404 ", (await HttpAsync(port, "GET / HTTP/1.1\r\n\r\n")).Head, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 405 ", (await HttpAsync(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")).Head, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 400 ", (await HttpAsync(port, "hello\r\n\r\n")).Head, StringComparison.Ordinal);
        var (headOnly, empty) = await HttpAsync(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200 ", headOnly, StringComparison.Ordinal);
        Assert.Equal("", empty);

        await node.Client.RemoveAsync("web");
        var after = Exposition.Parse((await HttpAsync(port, "GET /metrics HTTP/1.1\r\n\r\n")).Body);
        Assert.Equal(0, after.Value("orchd_node_containers", "node", n, "state", "running"));
        Assert.False(after.ContainsKey("orchd_container_info"), "a removed container leaves no series behind");
    }
}
