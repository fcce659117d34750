using System.Text;

namespace Orchestrator.Testing;

/// <summary>
/// A seeded mutational fuzzer for the parsers that take outside input: inputs are made from a
/// seed corpus by flipping, inserting (bytes, or tokens of the format), deleting, repeating and
/// truncating, the same inputs for the same seed. `make test` runs a short round (ORCH_FUZZ_ITERATIONS,
/// default below), `make fuzz` a long one; a failure names the seed that reproduces it.
/// </summary>
public static class Mutator
{
    public static int Iterations(int @default) =>
        int.TryParse(Environment.GetEnvironmentVariable("ORCH_FUZZ_ITERATIONS"), out var n) && n > 0 ? n : @default;

    public static int FirstSeed => int.TryParse(Environment.GetEnvironmentVariable("ORCH_FUZZ_FIRST_SEED"), out var s) ? s : 1;

    public static byte[] Mutate(byte[] input, Random random, IReadOnlyList<string> tokens, int maxLength = 1 << 16)
    {
        var data = new List<byte>(input);
        var rounds = 1 + random.Next(8);
        for (var i = 0; i < rounds; i++)
        {
            var at = data.Count == 0 ? 0 : random.Next(data.Count);
            switch (random.Next(7))
            {
                case 0 when data.Count > 0:
                    data[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    data.Insert(at, (byte)random.Next(256));
                    break;
                case 2 when tokens.Count > 0:
                    data.InsertRange(at, Encoding.UTF8.GetBytes(tokens[random.Next(tokens.Count)]));
                    break;
                case 3 when data.Count > 0:
                    data.RemoveRange(at, Math.Min(data.Count - at, 1 + random.Next(16)));
                    break;
                case 4 when data.Count > 0:
                    var length = Math.Min(data.Count - at, 1 + random.Next(64));
                    var chunk = data.GetRange(at, length);
                    for (var r = random.Next(1, 20); r > 0 && data.Count < maxLength; r--)
                    {
                        data.InsertRange(at, chunk);
                    }
                    break;
                case 5 when data.Count > 0:
                    data.RemoveRange(at, data.Count - at);
                    break;
                default:
                    if (data.Count > 0)
                    {
                        data[at] = (byte)"\0\n\r\t :-[]{}\"'&*!|>%@`#,?\\"[random.Next(25)];
                    }
                    break;
            }
        }
        return data.Count > maxLength ? data.GetRange(0, maxLength).ToArray() : data.ToArray();
    }

    /// <summary>Runs <paramref name="check"/> on <paramref name="count"/> mutants of the corpus; fails with the seed, the exception and the input of the first that throws what it should not.</summary>
    public static void Run(string name, IReadOnlyList<byte[]> corpus, IReadOnlyList<string> tokens, int count, Action<byte[]> check, Func<Exception, bool> expected)
        => Run(name, corpus, tokens, FirstSeed, count, check, expected);

    /// <summary>The mutants of seeds <paramref name="first"/> to first + count - 1 (a seed that once failed is kept as a test this way).</summary>
    public static void Run(string name, IReadOnlyList<byte[]> corpus, IReadOnlyList<string> tokens, int first, int count, Action<byte[]> check, Func<Exception, bool> expected)
    {
        for (var seed = first; seed < first + count; seed++)
        {
            var random = new Random(seed);
            var input = Mutate(corpus[random.Next(corpus.Count)], random, tokens);
            try
            {
                check(input);
            }
            catch (Exception e) when (expected(e))
            {
                // refused with one clear error: what a malformed input should get
            }
            catch (Exception e)
            {
                var path = Path.Combine(Path.GetTempPath(), $"orch-fuzz-{name}-{seed}.bin");
                File.WriteAllBytes(path, input);
                throw new InvalidOperationException($"fuzz {name}: seed {seed} (ORCH_FUZZ_FIRST_SEED={seed} ORCH_FUZZ_ITERATIONS=1 replays it; the input is in {path}): {e.GetType().Name}: {e.Message}", e);
            }
        }
    }
}
