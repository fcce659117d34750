namespace Orchestrator.Syntax;

/// <summary>
/// One flag: its names (<c>-o</c>, <c>--output</c>), the key its values are filed under (the
/// <c>--</c> name, else the first), whether it takes a value (and what the value is, for the
/// error when it is missing), and whether it ends the parse (help: the caller prints usage).
/// </summary>
public sealed record Flag(IReadOnlyList<string> Names, bool TakesValue, string? ValueName = null, bool EndsParse = false)
{
    public string Key { get; } = Names.FirstOrDefault(n => n.StartsWith("--", StringComparison.Ordinal)) ?? Names[0];
}

/// <summary>The flags a command takes, looked up by any of their names.</summary>
public sealed class FlagSet
{
    private readonly Dictionary<string, Flag> _byName = new(StringComparer.Ordinal);

    /// <summary>Every name of every flag, in the order they were added.</summary>
    public List<string> Names { get; } = [];

    /// <summary>A flag that takes a value: <c>--name value</c> or <c>--name=value</c>; repeatable.</summary>
    public FlagSet Value(params string[] names) => Add(new Flag(names, TakesValue: true));

    /// <summary>A flag that takes a value, named for the error when it is missing ("a registry host").</summary>
    public FlagSet ValueNamed(string name, string? valueName) => Add(new Flag([name], TakesValue: true, valueName));

    /// <summary>A flag that takes no value.</summary>
    public FlagSet Switch(params string[] names) => Add(new Flag(names, TakesValue: false));

    /// <summary>A switch that ends the parse where it stands (-h, --help: what follows is not read).</summary>
    public FlagSet Help(params string[] names) => Add(new Flag(names, TakesValue: false, EndsParse: true));

    public FlagSet Add(Flag flag)
    {
        ArgumentNullException.ThrowIfNull(flag);
        foreach (var name in flag.Names)
        {
            _byName[name] = flag;
            Names.Add(name);
        }
        return this;
    }

    public Flag? Find(string name) => _byName.GetValueOrDefault(name);
}
