using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests.Simulation;

public sealed class InMemoryKVStoreTests
{
    private static byte[] B(string text) => Encoding.UTF8.GetBytes(text);

    private static string Show(byte[]? value) => value is null ? "null" : $"'{Encoding.UTF8.GetString(value)}'";

    private static string Show(NatsKVEntry<byte[]> e) => $"{e.Key}@{e.Revision} {e.Operation} d{e.Delta} {Show(e.Value)}";

    private static string Describe(Exception e) => e is NatsJSApiException api ? $"{e.GetType().Name} {api.Error.Code}/{api.Error.ErrCode}" : e.GetType().Name;

    private static string Show<T>(NatsResult<T> result) => result.Success ? $"ok {result.Value}" : $"err {Describe(result.Error)}";

    private static string Show(NatsResult result) => result.Success ? "ok" : $"err {Describe(result.Error)}";

    private static string Show(NatsResult<NatsKVEntry<byte[]>> result) => result.Success ? $"ok {Show(result.Value)}" : $"err {Describe(result.Error)}";

    /// <summary>A watch's initial entries (up to Delta 0), or what ended it.</summary>
    private static async Task<string> WatchAsync(INatsKVStore kv, IEnumerable<string> keys, NatsKVWatchOpts opts, CancellationToken cancellationToken)
    {
        var seen = new List<string>();
        await foreach (var entry in kv.WatchAsync<byte[]>(keys, opts: opts, cancellationToken: cancellationToken))
        {
            seen.Add(opts.MetaOnly ? $"{entry.Key}@{entry.Revision} {entry.Operation} d{entry.Delta}" : Show(entry));
            if (entry.Delta == 0)
            {
                break;
            }
        }
        return "[" + string.Join(", ", seen) + "]";
    }

    private static async Task<string> HistoryAsync(INatsKVStore kv, string key, CancellationToken cancellationToken)
    {
        var seen = new List<string>();
        await foreach (var entry in kv.HistoryAsync<byte[]>(key, cancellationToken: cancellationToken))
        {
            seen.Add(Show(entry));
        }
        return "[" + string.Join(", ", seen) + "]";
    }

    private static async Task<string> KeysAsync(INatsKVStore kv, CancellationToken cancellationToken)
    {
        var seen = new List<string>();
        await foreach (var key in kv.GetKeysAsync(cancellationToken: cancellationToken))
        {
            seen.Add(key);
        }
        return "[" + string.Join(", ", seen) + "]";
    }

    private static void Same(string real, string inMemory)
        => Assert.True(real == inMemory, $"real:\n{real}\n\nin memory:\n{inMemory}");

    private sealed class Transcript(CancellationToken cancellationToken, TimeSpan? stepTimeout = null)
    {
        public List<string> Lines { get; } = [];

        public async Task Step(string label, Func<CancellationToken, Task<string>> action)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(stepTimeout ?? TimeSpan.FromSeconds(10));
            try
            {
                Lines.Add($"{label}: {await action(timeout.Token)}");
            }
            catch (Exception e)
            {
                Lines.Add($"{label}: !{Describe(e)}");
            }
        }

        public override string ToString() => string.Join("\n", Lines);
    }

    /// <summary>The same calls, and what a reader can see of their results, on a real bucket and on the in-memory one (both fresh, history 3).</summary>
    private static async Task<string> ScriptAsync(INatsKVStore kv, CancellationToken cancellationToken)
    {
        var t = new Transcript(cancellationToken);
        var noData = 0;
        var endOnNoData = new NatsKVWatchOpts { OnNoData = _ => { noData++; return ValueTask.FromResult(true); } };
        await t.Step("watch empty", async ct => await WatchAsync(kv, [">"], endOnNoData, ct) + $" onNoData={noData}");
        await t.Step("keys empty", ct => KeysAsync(kv, ct));
        await t.Step("put a 1", async ct => $"{await kv.PutAsync("a", B("1"), cancellationToken: ct)}");
        await t.Step("put a 2", async ct => $"{await kv.PutAsync("a", B("2"), cancellationToken: ct)}");
        await t.Step("put b.x", async ct => $"{await kv.PutAsync("b.x", B("x"), cancellationToken: ct)}");
        await t.Step("get a", async ct => Show(await kv.TryGetEntryAsync<byte[]>("a", cancellationToken: ct)));
        await t.Step("get a@1", async ct => Show(await kv.TryGetEntryAsync<byte[]>("a", 1, cancellationToken: ct)));
        await t.Step("get a@3 (b.x's)", async ct => Show(await kv.TryGetEntryAsync<byte[]>("a", 3, cancellationToken: ct)));
        await t.Step("get zz", async ct => Show(await kv.TryGetEntryAsync<byte[]>("zz", cancellationToken: ct)));
        await t.Step("getentry zz", async ct => Show(await kv.GetEntryAsync<byte[]>("zz", cancellationToken: ct)));
        await t.Step("get bad key", async ct => Show(await kv.TryGetEntryAsync<byte[]>("a b", cancellationToken: ct)));
        await t.Step("string get a", async ct => (await kv.GetEntryAsync<string>("a", cancellationToken: ct)).Value ?? "null");
        await t.Step("create a", async ct => Show(await kv.TryCreateAsync("a", B("c"), cancellationToken: ct)));
        await t.Step("create! a", async ct => $"{await kv.CreateAsync("a", B("c"), cancellationToken: ct)}");
        await t.Step("create c", async ct => Show(await kv.TryCreateAsync("c", B("c"), cancellationToken: ct)));
        await t.Step("update a@1", async ct => Show(await kv.TryUpdateAsync("a", B("u"), 1, cancellationToken: ct)));
        await t.Step("update! a@1", async ct => $"{await kv.UpdateAsync("a", B("u"), 1, cancellationToken: ct)}");
        await t.Step("update a@2", async ct => Show(await kv.TryUpdateAsync("a", B("u"), 2, cancellationToken: ct)));
        await t.Step("update new@0", async ct => Show(await kv.TryUpdateAsync("new", B("n"), 0, cancellationToken: ct)));
        await t.Step("delete b.x", async ct => { await kv.DeleteAsync("b.x", cancellationToken: ct); return "ok"; });
        await t.Step("get b.x", async ct => Show(await kv.TryGetEntryAsync<byte[]>("b.x", cancellationToken: ct)));
        await t.Step("getentry b.x", async ct => Show(await kv.GetEntryAsync<byte[]>("b.x", cancellationToken: ct)));
        await t.Step("update b.x@0", async ct => Show(await kv.TryUpdateAsync("b.x", B("y"), 0, cancellationToken: ct)));
        await t.Step("create b.x", async ct => Show(await kv.TryCreateAsync("b.x", B("y"), cancellationToken: ct)));
        await t.Step("delete a@1", async ct => Show(await kv.TryDeleteAsync("a", new NatsKVDeleteOpts { Revision = 1 }, ct)));
        await t.Step("delete! a@1", async ct => { await kv.DeleteAsync("a", new NatsKVDeleteOpts { Revision = 1 }, ct); return "ok"; });
        await t.Step("delete never", async ct => Show(await kv.TryDeleteAsync("never", cancellationToken: ct)));
        for (var i = 3; i <= 5; i++)
        {
            var value = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await t.Step($"put a {value}", async ct => $"{await kv.PutAsync("a", B(value), cancellationToken: ct)}");
        }
        await t.Step("history a", ct => HistoryAsync(kv, "a", ct));
        await t.Step("get a@1 trimmed", async ct => Show(await kv.TryGetEntryAsync<byte[]>("a", 1, cancellationToken: ct)));
        await t.Step("put d 1", async ct => $"{await kv.PutAsync("d", B("1"), cancellationToken: ct)}");
        await t.Step("put d 2", async ct => $"{await kv.PutAsync("d", B("2"), cancellationToken: ct)}");
        await t.Step("purge d", async ct => { await kv.PurgeAsync("d", cancellationToken: ct); return "ok"; });
        await t.Step("history d", ct => HistoryAsync(kv, "d", ct));
        await t.Step("get d", async ct => Show(await kv.TryGetEntryAsync<byte[]>("d", cancellationToken: ct)));
        await t.Step("history zz", ct => HistoryAsync(kv, "zz", ct));
        await t.Step("history never", ct => HistoryAsync(kv, "never", ct));
        await t.Step("put e empty", async ct => $"{await kv.PutAsync("e", Array.Empty<byte>(), cancellationToken: ct)}");
        await t.Step("get e", async ct => Show(await kv.TryGetEntryAsync<byte[]>("e", cancellationToken: ct)));
        await t.Step("put f", async ct => $"{await kv.PutAsync("f", B("f"), cancellationToken: ct)}");
        await t.Step("watch >", ct => WatchAsync(kv, [">"], endOnNoData, ct));
        await t.Step("watch b.*", ct => WatchAsync(kv, ["b.*"], endOnNoData, ct));
        // One key: nats-server 2.9 ignores a consumer's filter_subjects (2.10+), so a real watch of several keys sees every key there.
        await t.Step("watch a history", ct => WatchAsync(kv, ["a"], new NatsKVWatchOpts { IncludeHistory = true }, ct));
        await t.Step("watch ignore deletes", ct => WatchAsync(kv, [">"], new NatsKVWatchOpts { IgnoreDeletes = true }, ct));
        await t.Step("watch meta only", ct => WatchAsync(kv, [">"], new NatsKVWatchOpts { MetaOnly = true }, ct));
        await t.Step("watch from 14", ct => WatchAsync(kv, [">"], new NatsKVWatchOpts { ResumeAtRevision = 14 }, ct));
        await t.Step("watch zz", async ct => await WatchAsync(kv, ["zz"], endOnNoData, ct) + $" onNoData={noData}");
        await t.Step("keys", ct => KeysAsync(kv, ct));
        await t.Step("read all", async ct => string.Join(", ", (await FleetState.ReadAllAsync(kv, ct)).Select(kv => $"{kv.Key}={Show(kv.Value)}")));
        return t.ToString();
    }

    /// <summary>What each call does when the bucket's stream is gone.</summary>
    private static async Task<string> MissingScriptAsync(INatsKVContext context, INatsKVStore kv, CancellationToken cancellationToken, TimeSpan? stepTimeout = null)
    {
        var t = new Transcript(cancellationToken, stepTimeout);
        await t.Step("put", async ct => $"{await kv.PutAsync("a", B("1"), cancellationToken: ct)}");
        await t.Step("tryput", async ct => Show(await kv.TryPutAsync("a", B("1"), cancellationToken: ct)));
        await t.Step("trycreate", async ct => Show(await kv.TryCreateAsync("a", B("1"), cancellationToken: ct)));
        await t.Step("tryupdate", async ct => Show(await kv.TryUpdateAsync("a", B("1"), 1, cancellationToken: ct)));
        await t.Step("delete", async ct => { await kv.DeleteAsync("a", cancellationToken: ct); return "ok"; });
        await t.Step("trydelete", async ct => Show(await kv.TryDeleteAsync("a", cancellationToken: ct)));
        await t.Step("tryget", async ct => Show(await kv.TryGetEntryAsync<byte[]>("a", cancellationToken: ct)));
        await t.Step("watch", ct => WatchAsync(kv, [">"], new NatsKVWatchOpts { OnNoData = _ => ValueTask.FromResult(true) }, ct));
        await t.Step("history", ct => HistoryAsync(kv, "a", ct));
        await t.Step("keys", ct => KeysAsync(kv, ct));
        await t.Step("get store", async ct => (await context.GetStoreAsync(kv.Bucket, ct)).Bucket);
        await t.Step("open", async ct => (await FleetStore.OpenAsync(context, kv.Bucket, 3, ct)).Bucket);
        await t.Step("put again", async ct => $"{await kv.PutAsync("a", B("1"), cancellationToken: ct)}");
        return t.ToString();
    }

    private static async Task<(NatsConnection Connection, NatsKVContext Context)> ConnectAsync(NatsServer nats, TimeSpan? requestTimeout = null)
    {
        // A connect timeout that a loaded machine (the simulator's scenarios use every core) does not miss.
        var connection = new NatsConnection(new NatsOpts { Url = nats.Url, RequestTimeout = requestTimeout ?? TimeSpan.FromSeconds(5), ConnectTimeout = TimeSpan.FromSeconds(15) });
        await connection.ConnectAsync();
        return (connection, new NatsKVContext(new NatsJSContext(connection)));
    }

    [Fact(Timeout = 150_000)]
    [Trait("Category", "Integration")]
    public async Task Does_what_a_real_bucket_does()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var nats = await NatsServer.StartAsync();
        var (connection, real) = await ConnectAsync(nats);
        await using var _ = connection;
        var sim = new InMemoryKVContext(new SimClock());

        var expected = await ScriptAsync(await real.CreateStoreAsync(new NatsKVConfig("t") { History = 3 }, ct), ct);
        var actual = await ScriptAsync(await sim.CreateStoreAsync(new NatsKVConfig("t") { History = 3 }, ct), ct);
        Same(expected, actual);
    }

    [Fact(Timeout = 150_000)]
    [Trait("Category", "Integration")]
    public async Task Fails_as_a_real_bucket_does_when_its_stream_is_gone()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var nats = await NatsServer.StartAsync();
        var (connection, real) = await ConnectAsync(nats, TimeSpan.FromSeconds(1));
        await using var _ = connection;
        var realStore = await real.CreateStoreAsync(new NatsKVConfig("m") { History = 3 }, ct);
        await realStore.PutAsync("a", B("0"), cancellationToken: ct);
        await real.DeleteStoreAsync("m", ct);
        var expected = await MissingScriptAsync(real, realStore, ct);

        var sim = new InMemoryKVContext(new SimClock());
        var simStore = sim.GetOrCreate("m", 3);
        await simStore.PutAsync("a", B("0"), cancellationToken: ct);
        sim.WipeAll();
        var actual = await MissingScriptAsync(sim, simStore, ct);
        Same(expected, actual);
    }

    /// <summary>
    /// Not the same: with the server down the real client (default options) neither answers nor
    /// fails: every call waits for the reconnect or the caller's cancellation. The in-memory store
    /// fails at once instead, as the caller's timeout would make it.
    /// </summary>
    [Fact(Timeout = 150_000)]
    [Trait("Category", "Integration")]
    public async Task In_an_outage_fails_at_once_where_a_real_client_waits()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var nats = await NatsServer.StartAsync();
        var (connection, real) = await ConnectAsync(nats, TimeSpan.FromSeconds(1));
        await using var _ = connection;
        var realStore = await real.CreateStoreAsync(new NatsKVConfig("o") { History = 3 }, ct);
        await realStore.PutAsync("a", B("0"), cancellationToken: ct);
        await nats.StopAsync();
        var expected = await MissingScriptAsync(real, realStore, ct, TimeSpan.FromSeconds(1));
        // Each call waited and ended by a timeout: the caller's cancellation, or for a put the
        // JetStream publish's own 1 s request timeout when it went out before the client saw the
        // connection drop (a race of two 1 s timers: a loaded run saw it once in four).
        Assert.All(expected.Split('\n'), line => Assert.Matches(": !(TaskCanceledException|NatsJSPublishNoResponseException)$", line));
        Assert.Contains(": !TaskCanceledException", expected, StringComparison.Ordinal);

        var sim = new InMemoryKVContext(new SimClock());
        var simStore = sim.GetOrCreate("o", 3);
        await simStore.PutAsync("a", B("0"), cancellationToken: ct);
        sim.Outage = true;
        var actual = await MissingScriptAsync(sim, simStore, ct);
        Assert.All(actual.Split('\n'), line => Assert.Matches(": (!Nats|err Nats)", line));
        sim.Outage = false;
        Assert.Equal(2ul, await simStore.PutAsync("a", B("1"), cancellationToken: ct));
    }

    // ---- the in-memory store alone ----

    private static T Done<T>(ValueTask<T> task) => task.IsCompletedSuccessfully ? task.Result : throw new Xunit.Sdk.XunitException("not completed synchronously");

    private static void Done(ValueTask task) => Assert.True(task.IsCompletedSuccessfully, "not completed synchronously");

    private static void Done(Task task) => Assert.True(task.IsCompletedSuccessfully, "not completed synchronously");

    [Fact]
    public void Every_call_completes_on_the_callers_thread()
    {
        var kv = new InMemoryKVStore("b", 2, new SimClock());
        Assert.Equal(1ul, Done(kv.PutAsync("a", B("1"))));
        Assert.True(Done(kv.TryGetEntryAsync<byte[]>("a")).Success);
        Assert.False(Done(kv.TryCreateAsync("a", B("2"))).Success);
        Done(kv.DeleteAsync("a"));
        var watch = kv.WatchAsync<byte[]>(">").GetAsyncEnumerator();
        Assert.True(Done(watch.MoveNextAsync()));
        Assert.Equal(NatsKVOperation.Del, watch.Current.Operation);
        Assert.False(Done(watch.MoveNextAsync()));
        var history = kv.HistoryAsync<byte[]>("a").GetAsyncEnumerator();
        Assert.True(Done(history.MoveNextAsync()));
        Done(FleetState.ReadAllAsync(kv, CancellationToken.None));
    }

    [Fact]
    public async Task One_sequence_per_bucket_and_Created_from_the_clock()
    {
        var clock = new SimClock();
        var context = new InMemoryKVContext(clock);
        var one = context.GetOrCreate("one");
        var two = context.GetOrCreate("two");
        Assert.Equal(1ul, await one.PutAsync("a", B("1")));
        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(2ul, await one.PutAsync("b", B("1")));
        Assert.Equal(1ul, await two.PutAsync("a", B("1")));
        Assert.Equal(SimClock.DefaultStart, (await one.GetEntryAsync<byte[]>("a")).Created);
        Assert.Equal(SimClock.DefaultStart.AddSeconds(5), (await one.GetEntryAsync<byte[]>("b")).Created);
        Assert.Equal(SimClock.DefaultStart.AddSeconds(5), clock.GetUtcNow());
        Assert.Equal(TimeSpan.FromSeconds(5), clock.GetElapsedTime(clock.GetTimestamp() - TimeSpan.TicksPerSecond * 5));
    }

    [Fact]
    public async Task Keeps_history_values_per_key_and_a_purge_only_its_marker()
    {
        var kv = new InMemoryKVStore("b", 2, new SimClock());
        for (var i = 1; i <= 4; i++)
        {
            await kv.PutAsync("a", B($"{i}"));
        }
        Assert.Equal("[a@3 Put d1 '3', a@4 Put d0 '4']", await HistoryAsync(kv, "a", CancellationToken.None));
        await kv.PurgeAsync("a");
        Assert.Equal("[a@5 Purge d0 null]", await HistoryAsync(kv, "a", CancellationToken.None));
        Assert.IsType<NatsKVKeyDeletedException>((await kv.TryGetEntryAsync<byte[]>("a")).Error);
        Assert.Equal(6ul, await kv.CreateAsync("a", B("again")));
    }

    [Fact]
    public async Task The_lease_is_created_renewed_and_taken_over_by_compare_and_set()
    {
        // What FleetMember.LeadAsync does with the orch-leader bucket.
        var kv = new InMemoryKVStore(Buckets.Leader, 1, new SimClock());
        var none = await kv.TryGetEntryAsync<byte[]>("scheduler");
        Assert.IsType<NatsKVKeyNotFoundException>(none.Error);
        var mine = await kv.TryCreateAsync("scheduler", B("\"n1\""));
        Assert.True(mine.Success);
        Assert.False((await kv.TryCreateAsync("scheduler", B("\"n2\""))).Success);
        Assert.True((await kv.TryUpdateAsync("scheduler", B("\"n1\""), mine.Value)).Success);
        Assert.IsType<NatsKVWrongLastRevisionException>((await kv.TryUpdateAsync("scheduler", B("\"n2\""), mine.Value)).Error);
        await kv.DeleteAsync("scheduler");
        // A deleted lease is not an entry with Operation Del: the read fails, and create takes it.
        var deleted = await kv.TryGetEntryAsync<byte[]>("scheduler");
        Assert.False(deleted.Success);
        Assert.Equal(3ul, Assert.IsType<NatsKVKeyDeletedException>(deleted.Error).Revision);
        Assert.Equal(4ul, (await kv.TryCreateAsync("scheduler", B("\"n2\""))).Value);
    }

    [Fact]
    public async Task A_wiped_bucket_is_missing_until_made_again_and_then_starts_at_sequence_1()
    {
        var context = new InMemoryKVContext(new SimClock());
        var kv = (InMemoryKVStore)await FleetStore.OpenAsync(context, Buckets.Deployments, Buckets.DeploymentHistory, CancellationToken.None);
        Assert.Equal(Buckets.DeploymentHistory, kv.History);
        await kv.PutAsync("web", B("1"));
        await kv.PutAsync("web", B("2"));
        context.WipeAll();
        Assert.True(kv.Missing);
        await Assert.ThrowsAsync<NatsJSPublishNoResponseException>(async () => await kv.PutAsync("web", B("3")));
        Assert.False((await kv.TryPutAsync("web", B("3"))).Success);
        await Assert.ThrowsAsync<NatsNoReplyException>(async () => await kv.TryGetEntryAsync<byte[]>("web"));
        var watch = await Assert.ThrowsAsync<NatsJSApiException>(async () => await FleetState.ReadAllAsync(kv, CancellationToken.None));
        Assert.Equal((404, 10059), (watch.Error.Code, watch.Error.ErrCode));
        await Assert.ThrowsAsync<NatsJSApiException>(async () => await context.GetStoreAsync(Buckets.Deployments));

        Assert.Same(kv, await FleetStore.OpenAsync(context, Buckets.Deployments, Buckets.DeploymentHistory, CancellationToken.None));
        Assert.False(kv.Missing);
        Assert.Empty(await FleetState.ReadAllAsync(kv, CancellationToken.None));
        Assert.Equal(1ul, await kv.PutAsync("web", B("3")));
    }

    [Fact]
    public async Task An_outage_fails_every_call_until_it_ends()
    {
        var context = new InMemoryKVContext(new SimClock());
        var kv = context.GetOrCreate("b");
        await kv.PutAsync("a", B("1"));
        context.Outage = true;
        Assert.True(kv.Unavailable);
        await Assert.ThrowsAsync<NatsJSPublishNoResponseException>(async () => await kv.PutAsync("a", B("2")));
        await Assert.ThrowsAsync<NatsNoReplyException>(async () => await kv.TryGetEntryAsync<byte[]>("a"));
        await Assert.ThrowsAsync<NatsJSApiNoResponseException>(async () => await FleetState.ReadAllAsync(kv, CancellationToken.None));
        await Assert.ThrowsAsync<NatsJSApiNoResponseException>(async () => await context.GetStoreAsync("b"));
        context.Outage = false;
        Assert.Equal(2ul, await kv.PutAsync("a", B("2")));
    }

    [Fact]
    public async Task A_watch_ends_after_the_current_values_and_does_not_support_updates_only()
    {
        var kv = new InMemoryKVStore("b", 1, new SimClock());
        await kv.PutAsync("n1", B("1"));
        var calls = 0;
        var opts = new NatsKVWatchOpts { OnNoData = _ => { calls++; return ValueTask.FromResult(false); } };
        var seen = new List<string>();
        await foreach (var entry in kv.WatchAsync<byte[]>("n1", opts: opts))
        {
            seen.Add($"{entry.Key} d{entry.Delta}");
        }
        Assert.Equal(["n1 d0"], seen);
        await foreach (var entry in kv.WatchAsync<byte[]>("n2", opts: opts))
        {
            Assert.Fail("nothing to watch");
        }
        Assert.Equal(1, calls);
        await Assert.ThrowsAsync<NotSupportedException>(async () =>
        {
            await foreach (var entry in kv.WatchAsync<byte[]>(">", opts: new NatsKVWatchOpts { UpdatesOnly = true }))
            {
            }
        });
    }

    [Theory]
    [InlineData(">", "a", true)]
    [InlineData(">", "a.b", true)]
    [InlineData("a.>", "a", false)]
    [InlineData("a.>", "a.b.c", true)]
    [InlineData("a.*", "a.b", true)]
    [InlineData("a.*", "a.b.c", false)]
    [InlineData("*.b", "a.b", true)]
    [InlineData("a", "a", true)]
    [InlineData("a", "ab", false)]
    public void Key_filters_match_as_NATS_subjects(string filter, string key, bool matches)
        => Assert.Equal(matches, InMemoryKVStore.SubjectMatches(filter, key));

    // ---- the real scheduler against it ----

    private static byte[] Heartbeat(string node, string zone) => JsonSerializer.SerializeToUtf8Bytes(new NodeInfo
    {
        Node = node, NodeId = node, Version = "sim", Arch = "x64", Kernel = "6", Runtime = "native",
        Labels = new Dictionary<string, string> { ["zone"] = zone },
        Status = new NodeStatus { CpuMilliCapacity = 2000, CpuMilliAllocatable = 2000, MemoryCapacityBytes = 1L << 30, MemoryAllocatableBytes = 1L << 30 },
        Containers = [],
    }, FleetJsonContext.Default.NodeInfo);

    private static async Task<(SchedulerBuckets Buckets, InMemoryKVContext Context)> FleetAsync(SimClock clock, CancellationToken ct)
    {
        var context = new InMemoryKVContext(clock);
        var buckets = new SchedulerBuckets(
            await FleetStore.OpenAsync(context, Buckets.Nodes, 1, ct),
            await FleetStore.OpenAsync(context, Buckets.Deployments, Buckets.DeploymentHistory, ct),
            await FleetStore.OpenAsync(context, Buckets.Assignments, 1, ct),
            await FleetStore.OpenAsync(context, Buckets.DeploymentStatus, 1, ct),
            await FleetStore.OpenAsync(context, Buckets.NodeSettings, 1, ct));
        await buckets.Nodes.PutAsync("n1", Heartbeat("n1", "a"), cancellationToken: ct);
        await buckets.Nodes.PutAsync("n2", Heartbeat("n2", "b"), cancellationToken: ct);
        var web = new Deployment { Name = "web", Replicas = 2, Template = new Workload { Image = "busybox", Command = ["sleep", "3600"] } };
        await buckets.Deployments.PutAsync("web", JsonSerializer.SerializeToUtf8Bytes(web, WorkloadJsonContext.Default.Deployment), cancellationToken: ct);
        return (buckets, context);
    }

    [Fact]
    public async Task The_real_scheduler_places_a_deployment_in_the_in_memory_buckets()
    {
        var ct = TestContext.Current.CancellationToken;
        // The scheduler and FleetState read DateTimeOffset.UtcNow for heartbeat ages: start there.
        var clock = new SimClock(DateTimeOffset.UtcNow);
        var (buckets, _) = await FleetAsync(clock, ct);

        var nodes = await FleetState.ReadNodesAsync(buckets.Nodes, new FleetOptions(), ct, settings: buckets.Settings);
        Assert.Equal(["n1", "n2"], nodes.Select(n => n.Info.Node));
        Assert.All(nodes, n => Assert.Equal(NodeCondition.Ready, n.State));

        var options = new FleetOptions { Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(3), Clock = clock };
        var scheduler = new FleetScheduler("n1", options, NullLogger.Instance, (_, _, _) => { });
        var pass = scheduler.ScheduleOnceAsync(buckets, ct);
        Assert.True(pass.IsCompletedSuccessfully, "a pass against in-memory buckets runs to the end on the calling thread");
        await pass;
        // A new scheduler places nothing until it has watched heartbeats for the settle time.
        Assert.Empty(await FleetState.ReadAllAsync(buckets.Assignments, ct));
        for (var i = 0; i < 4; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            foreach (var (key, entry) in await FleetState.ReadAllAsync(buckets.Nodes, ct))
            {
                await buckets.Nodes.PutAsync(key, entry.Value, cancellationToken: ct);
            }
            await scheduler.ScheduleOnceAsync(buckets, ct);
        }

        var stored = await FleetState.ReadAllAsync(buckets.Assignments, ct);
        Assert.Equal(["n1", "n2"], stored.Keys.Order(StringComparer.Ordinal));
        var replicas = stored.ToDictionary(kv => kv.Key, kv => NodeAssignments.Parse(kv.Value.Value).Replicas.Select(r => r.Replica).Single());
        Assert.Equal(["web-0", "web-1"], replicas.Values.Order(StringComparer.Ordinal));
        var status = JsonSerializer.Deserialize((await buckets.Status.GetEntryAsync<byte[]>("web", cancellationToken: ct)).Value, FleetJsonContext.Default.DeploymentStatus)!;
        Assert.Equal(2, status.Placed);
        Assert.Equal(replicas.ToDictionary(kv => kv.Value, kv => kv.Key), status.Replicas);

        // Level-triggered and idempotent: another pass over the same state writes no assignment.
        clock.Advance(TimeSpan.FromSeconds(1));
        var sequence = ((InMemoryKVStore)buckets.Assignments).LastSequence;
        await scheduler.ScheduleOnceAsync(buckets, ct);
        Assert.Equal(0, scheduler.LastWrites);
        Assert.Equal(sequence, ((InMemoryKVStore)buckets.Assignments).LastSequence);

        // A node gone from the bucket: its replica moves to the other one, and its key goes.
        await buckets.Nodes.DeleteAsync("n2", cancellationToken: ct);
        clock.Advance(TimeSpan.FromSeconds(1));
        await scheduler.ScheduleOnceAsync(buckets, ct);
        stored = await FleetState.ReadAllAsync(buckets.Assignments, ct);
        Assert.Equal(["n1"], stored.Keys);
        Assert.Equal(["web-0", "web-1"], NodeAssignments.Parse(stored["n1"].Value).Replicas.Select(r => r.Replica).Order(StringComparer.Ordinal));
        Assert.IsType<NatsKVKeyDeletedException>((await buckets.Assignments.TryGetEntryAsync<byte[]>("n2", cancellationToken: ct)).Error);
    }

    [Fact]
    public async Task Two_runs_from_the_same_start_store_the_same_assignments_at_the_same_revisions()
    {
        var ct = TestContext.Current.CancellationToken;
        var start = DateTimeOffset.UtcNow;
        async Task<string> RunAsync()
        {
            var clock = new SimClock(start);
            var (buckets, _) = await FleetAsync(clock, ct);
            var scheduler = new FleetScheduler("n1", new FleetOptions { Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(3), Clock = clock }, NullLogger.Instance, (_, _, _) => { });
            for (var i = 0; i < 5; i++)
            {
                await scheduler.ScheduleOnceAsync(buckets, ct);
                clock.Advance(TimeSpan.FromSeconds(1));
            }
            var stored = await FleetState.ReadAllAsync(buckets.Assignments, ct);
            return string.Join("\n", stored.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}@{kv.Value.Revision} {kv.Value.Created:O} {Convert.ToHexString(kv.Value.Value!)}"));
        }
        Assert.Equal(await RunAsync(), await RunAsync());
    }
}
